/**
 * The only module that speaks SQL: stores messages and reads them back in delivery order.
 *
 * Delivery order is (txid, id): the inserting transaction's id, then the row's sequence number.
 * Reading `WHERE id > last_seen` loses rows, because sequence values are taken before commit: a
 * transaction holding id 41 can commit after id 42 was read. So every read here sees only *final*
 * rows, those whose transaction is older than `pg_snapshot_xmin(pg_current_snapshot())`: every
 * transaction below that horizon has ended, and every transaction still to write a row will get a
 * larger txid. The final rows, in (txid, id) order, form an append-only log that every node reads
 * alike. The cost: an open write transaction anywhere on the server holds the horizon back, delaying
 * (never losing) rows committed after it began, until it ends.
 *
 * Inserts are group-committed: a few writers each take every insert waiting and store them with
 * one multi-row INSERT, so under load one round trip and one commit serve many messages. Rows
 * written together share a transaction: they become final, and are delivered, together, in the
 * order their requests arrived. An idle service writes each message at once, as it comes.
 */
import { type Migrator, SqlClient, type SqlError, SqlSchema, type Statement } from "@effect/sql"
import {
  Array as Arr,
  Cause,
  Chunk,
  Clock,
  Context,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Layer,
  Option,
  type ParseResult,
  PubSub,
  Queue,
  Schema,
  Stream,
  type Tracer
} from "effect"
import type { Channels } from "../Domain/Channels.js"
import pg from "pg"
import { beginning, Channel, Message, MessageId, messageId, messageIdParts, type NewMessage } from "../Domain/Message.js"
import { AppConfig } from "../Config.js"
import { migrate } from "./Database.js"
import { wakeupChannel } from "./migrations/00003_notify_wakeup.js"

export class DatabaseError extends Data.TaggedError("DatabaseError")<{ readonly cause: SqlError.SqlError }> {
  override get message() {
    const driver = this.cause.cause instanceof Error ? ` (${this.cause.cause.message})` : ""
    return `The database is unavailable: ${this.cause.message}${driver}`
  }
  /** The SQLSTATE PostgreSQL answered with; none when it could not be reached. */
  get code(): string | undefined {
    const driver = this.cause.cause
    return driver instanceof pg.DatabaseError ? driver.code : undefined
  }
  /** PostgreSQL answered that a table is missing (SQLSTATE 42P01): the schema is gone. */
  get tableMissing() {
    return this.code === "42P01"
  }
}

/**
 * The stored messages' transaction ids are ahead of the server's transaction counter: the
 * database was restored (pg_dump) into another PostgreSQL. Served as it is, delivery order would be
 * wrong (messages hidden, then delivered again as new), so the service refuses to start.
 */
export class RestoredDatabaseError extends Data.TaggedError("RestoredDatabaseError")<{
  readonly newestTxid: string
  readonly nextTxid: string
}> {
  override get message() {
    return `The stored messages come from another PostgreSQL server: their transaction ids reach ${this.newestTxid}, ` +
      `but this server's transaction counter is at ${this.nextTxid} (was the database restored from a dump?). ` +
      `Stop every pollcast node on this database and run \`npm run repair\` once, with the same DATABASE_URL or DATA_DIR`
  }
}

/** What one retention batch deleted: `young` of the `deleted` were not yet expired (see prune). */
export interface Pruned {
  readonly deleted: number
  readonly young: number
  /** The batch was full of expired messages: more may be due at once. */
  readonly more: boolean
}

/**
 * The database was replaced under a running node by one whose transaction counter is behind the
 * node's position (a fresh server, or a backup restored): positions from before mean nothing
 * there, and delivery from the node's position would skip what is written; only a restart of
 * every node on it starts afresh.
 */
export class ReplacedDatabaseError extends Data.TaggedError("ReplacedDatabaseError")<{
  readonly position: MessageId
  readonly nextTxid: string
}> {
  override get message() {
    return `The database was replaced by one whose transaction counter (${this.nextTxid}) is behind this node's ` +
      `position (${this.position}): restart every pollcast node on it`
  }
}

/** See MessageRepo.probe. */
export interface Probe {
  /** The highest id any INSERT has taken (committed or not), 0 before the first. */
  readonly lastId: bigint
  /** The oldest transaction still running: rows of older ones are final. */
  readonly horizon: string
}

/** A write that failed: when, and the database's words. */
export interface WriteFailure {
  readonly at: number
  readonly message: string
}

export interface HistoryRequest {
  readonly channels: Channels
  /** Messages after this one, oldest first; or */
  readonly after?: MessageId | undefined
  /** the messages just before this one; with neither, the newest messages. */
  readonly before?: MessageId | undefined
  readonly limit: number
}

export interface HistoryPage {
  /** In delivery order. */
  readonly messages: ReadonlyArray<Message>
  /** Whether more messages lie beyond the page, in the direction it was read. */
  readonly more: boolean
}

export interface ReplayRequest {
  readonly channels: Channels
  readonly after: MessageId
  /** A position the poller has published, so every row up to it is final. */
  readonly through: MessageId
  readonly limit: number
  /** Bytes of message bodies a page holds at most (but always its first message). */
  readonly maxBytes: number
}

export class MessageRepo extends Context.Tag("pollcast/MessageRepo")<MessageRepo, {
  readonly insert: (message: NewMessage) => Effect.Effect<Message, DatabaseError>
  /** The poller's query: final rows after `after`, every channel, in delivery order. */
  readonly poll: (after: MessageId, limit: number) => Effect.Effect<ReadonlyArray<Message>, DatabaseError>
  /** The position of the newest final row, where a poller starting now begins. */
  readonly head: Effect.Effect<MessageId, DatabaseError>
  /** Rows in (after, through], for a client resuming from `after`. */
  readonly replay: (request: ReplayRequest) => Effect.Effect<ReadonlyArray<Message>, DatabaseError>
  readonly history: (request: HistoryRequest) => Effect.Effect<HistoryPage, DatabaseError>
  /** The position of the newest message in `channels` at or before `through` (the beginning if none). */
  readonly newest: (channels: Channels, through: MessageId) => Effect.Effect<MessageId, DatabaseError>
  /** Every message after this position is kept; retention has deleted every one up to it. */
  readonly retainedAfter: Effect.Effect<MessageId, DatabaseError>
  /**
   * Deletes one batch of the oldest messages created more than `retention` ago (never the newest
   * message), unless another node is doing so. Deletion takes a prefix of the delivery order, so
   * a message not yet expired that sorts before expired ones in the batch goes with them.
   */
  readonly prune: (retention: Duration.Duration, batchSize: number) => Effect.Effect<Pruned, DatabaseError>
  readonly ping: Effect.Effect<void, DatabaseError>
  /**
   * Creates the tables again, as a start does, once they are found gone (the database was dropped
   * and created again under the node); fails with ReplacedDatabaseError if the server's
   * transaction counter has not reached `position`, which delivery could then not go on from.
   */
  readonly recreateTables: (
    position: MessageId
  ) => Effect.Effect<void, DatabaseError | ReplacedDatabaseError | Migrator.MigrationError>
  /** pollcast_position() in a transaction of its own: where a snapshot taken now has seen up to (see Snapshot). */
  readonly position: Effect.Effect<string, DatabaseError>
  /** The next transaction id the server will assign: every snapshot taken on it is below. */
  readonly transactionCounter: Effect.Effect<bigint, DatabaseError>
  /**
   * What moves when rows are inserted or transactions end, read in O(1) (no table or index is
   * touched): the identity sequence's last value, taken by every INSERT however it is written, and
   * the delivery horizon. For the probe that wakes the poller (see Poller).
   */
  readonly probe: Effect.Effect<Probe, DatabaseError>
  /** This node's name in the notifications it sends after its commits (see Wakeups). */
  readonly announcer: string
  /** One element each time writes of this node have committed, for its own poller. */
  readonly committed: Stream.Stream<void>
  /**
   * The latest write's failure, if the server refused it (a full disk fails writes while reads go
   * on); a write that could not reach the server leaves this as it was.
   */
  readonly failingWrite: Effect.Effect<Option.Option<WriteFailure>>
}>() {}

// Rows as the driver returns them: int8 and xid8 as decimal strings (not parsed into numbers),
// timestamptz as a Date.
const positionColumns = { txid: Schema.BigInt, id: Schema.BigInt }

const columnsOf = (position: MessageId) => {
  const { seq, txid } = messageIdParts(position)
  return { txid: BigInt(txid), id: BigInt(seq) }
}

/** The (txid, id) of a row, as its MessageId. */
const Position = Schema.transform(Schema.Struct(positionColumns), Schema.typeSchema(MessageId), {
  strict: true,
  decode: ({ id, txid }) => messageId(txid, id),
  encode: columnsOf
})

// Each column is checked here (the channel's format too), so the Message skips re-validation.
const MessageRow = Schema.transform(
  Schema.Struct({
    ...positionColumns,
    channel: Channel,
    author: Schema.String,
    body: Schema.String,
    created_at: Schema.DateFromSelf
  }),
  Schema.typeSchema(Message),
  {
    strict: true,
    decode: (row) =>
      new Message({
        id: messageId(row.txid, row.id),
        channel: row.channel,
        author: row.author,
        body: row.body,
        createdAt: row.created_at
      }, true),
    encode: (message) => ({
      ...columnsOf(message.id),
      channel: message.channel,
      author: message.author,
      body: message.body,
      created_at: message.createdAt
    })
  }
)

/** For the reads whose queries are built from fragments (channel selections, directions). */
const decodeMessages = Schema.decodeUnknown(Schema.Array(MessageRow))

const Counted = Schema.Struct({ n: Schema.Number })

/** A position as a query's parameter, written into SQL by `position` (see make). */
const PositionParameter = Schema.typeSchema(MessageId)

/**
 * A query's SqlError becomes a DatabaseError. A row that does not decode, or no row where there is
 * always one, is a defect (the query and the table disagree), not an outage.
 */
const repoErrors = <A, R>(
  query: Effect.Effect<
    A,
    SqlError.SqlError | ParseResult.ParseError | Cause.NoSuchElementException | DatabaseError,
    R
  >
): Effect.Effect<A, DatabaseError, R> =>
  Effect.catchAll(query, (error) => {
    switch (error._tag) {
      case "SqlError":
        return Effect.fail(new DatabaseError({ cause: error }))
      case "DatabaseError":
        return Effect.fail(error)
      default:
        return Effect.die(error)
    }
  })

/** Inserts written at once (each takes a connection from the pool), and rows per INSERT at most. */
const writers = 2
const maxRowsPerInsert = 500

interface PendingInsert {
  readonly message: NewMessage
  readonly stored: Deferred.Deferred<Message, DatabaseError>
  /** The span of the request that asked for the insert, linked from the INSERT's span. */
  readonly span: Option.Option<Tracer.AnySpan>
}

const columns = "id, txid, channel, author, body, created_at"

const spanLink = (span: Tracer.AnySpan): Tracer.SpanLink => ({ _tag: "SpanLink", span, attributes: {} })

/** Taken by the node that deletes expired messages, so that one node at a time does. */
const retentionLock = 0x706f6c6c63617374n // "pollcast"

/**
 * Fails with RestoredDatabaseError when stored transaction ids are ahead of the server's counter
 * (see there). One index lookup: the newest txid is the end of messages_delivery_order.
 */
export const checkTransactionIds = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const found = yield* SqlSchema.single({
    Request: Schema.Void,
    Result: Schema.Struct({ newest: Schema.NullOr(Schema.BigInt), next: Schema.BigInt }),
    execute: () =>
      sql`
        SELECT (SELECT txid FROM messages ORDER BY txid DESC LIMIT 1)::text AS newest,
               pg_snapshot_xmax(pg_current_snapshot())::text AS next`
  })(undefined).pipe(repoErrors)
  if (found.newest !== null && found.newest >= found.next) {
    return yield* new RestoredDatabaseError({ newestTxid: found.newest.toString(), nextTxid: found.next.toString() })
  }
})

/** Connections of running pollcast nodes (named `applicationName`) on this database, by client address. */
export const connectedNodes = (applicationName: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    SqlSchema.findAll({
      Request: Schema.String,
      Result: Schema.Struct({ address: Schema.String, connections: Schema.Number }),
      execute: (name) =>
        sql`
          SELECT coalesce(host(client_addr), 'local') AS address, count(*)::int AS connections
          FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = ${name}
          GROUP BY 1 ORDER BY 1`
    })(applicationName)).pipe(repoErrors)

/**
 * The repair after a restore: renumbers every stored message below the server's transaction
 * counter, keeping their delivery order. All take transaction id 1 (below any real one) and
 * sequence numbers 1, 2, 3… in their old (txid, id) order, so their ids change: clients holding old
 * ids are told to reset (ahead of the newest message) and reload. Runs in one transaction with the
 * table locked; returns how many messages it renumbered.
 */
export const renumberRestored = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`LOCK TABLE messages IN ACCESS EXCLUSIVE MODE`
    yield* sql`
      CREATE TEMPORARY TABLE renumbered ON COMMIT DROP AS
      SELECT id AS old_id, row_number() OVER (ORDER BY txid, id) AS new_id FROM messages`
    // Identity columns can be updated only when generated BY DEFAULT; negating first keeps every
    // intermediate state unique.
    yield* sql`ALTER TABLE messages ALTER COLUMN id SET GENERATED BY DEFAULT`
    yield* sql`UPDATE messages SET id = -id`
    const updated = yield* SqlSchema.single({
      Request: Schema.Void,
      Result: Counted,
      execute: () =>
        sql`
          WITH updated AS (
            UPDATE messages SET id = renumbered.new_id, txid = '1'::xid8
            FROM renumbered WHERE messages.id = -renumbered.old_id
            RETURNING 1
          )
          SELECT count(*)::int AS n FROM updated`
    })(undefined)
    yield* sql`ALTER TABLE messages ALTER COLUMN id SET GENERATED ALWAYS`
    // Retention's mark moves to the start of the renumbered messages.
    yield* sql`UPDATE message_retention SET txid = '1'::xid8, id = 0`
    return updated.n
  }))
}).pipe(repoErrors)

/** Needs a Scope: the writers live in it. */
/** A name for a node's announcements, unique among the nodes (its processes share it). */
export const newAnnouncer = () => `pollcast ${process.pid} ${Math.random().toString(36).slice(2, 10)}`

export const make = (announceCommits: boolean, announcer: string = newAnnouncer()) => Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const rows = (query: Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) => Effect.flatMap(query, decodeMessages)

  const position = (id: MessageId) => {
    const { seq, txid } = messageIdParts(id)
    return sql`(${txid}::xid8, ${seq}::bigint)`
  }
  const channelFilter = (channels: Channels) =>
    channels === "all" ? sql`TRUE` : sql.in("channel", channels)
  const finalRows = sql`txid < pg_snapshot_xmin(pg_current_snapshot())`
  const forward = { inner: sql.literal("txid, id"), outer: sql.literal("selected.txid, selected.id") }
  const backward = {
    inner: sql.literal("txid DESC, id DESC"),
    outer: sql.literal("selected.txid DESC, selected.id DESC")
  }
  const qualifiedColumns = columns.split(", ").map((column) => `found.${column}`).join(", ")

  /**
   * At most `limit` rows that satisfy `where`, in the selected channels, in `order`. Over several
   * channels, each channel's first `limit` positions are read from its index on (channel, txid,
   * id), then merged, and only those rows are fetched. Filtering the delivery-order index by
   * `channel IN (…)` read that index until enough rows matched — the whole table when a channel
   * has few or none (0.72 s on 2M rows) — and so did a per-channel query fetching whole rows,
   * which the planner runs on that index too (each channel's share of the rows being unknown).
   */
  const selectRows = (
    channels: Channels,
    where: Statement.Fragment,
    order: typeof forward,
    limit: number
  ) =>
    channels === "all" || channels.length === 1
      ? sql`SELECT ${sql.literal(columns)} FROM messages
            WHERE ${where} AND ${channelFilter(channels)}
            ORDER BY ${order.inner}
            LIMIT ${limit}`
      : sql`SELECT ${sql.literal(qualifiedColumns)} FROM unnest(${channels}::text[]) AS wanted(name)
            CROSS JOIN LATERAL (
              SELECT txid, id FROM messages
              WHERE channel = wanted.name AND ${where}
              ORDER BY ${order.inner}
              LIMIT ${limit}
            ) AS selected
            JOIN messages AS found ON found.id = selected.id
            ORDER BY ${order.outer}
            LIMIT ${limit}`

  // The rows of a multi-row INSERT take their ids, and come back, in the order of its VALUES.
  const insertAll = (messages: ReadonlyArray<NewMessage>, links: ReadonlyArray<Tracer.SpanLink>) =>
    rows(
      sql`INSERT INTO messages ${sql.insert(messages.map(({ author, body, channel }) => ({ channel, author, body })))}
          RETURNING ${sql.literal(columns)}`
    ).pipe(
      repoErrors,
      Effect.filterOrDieMessage(
        (stored) => stored.length === messages.length,
        "INSERT returned a different number of rows than it was given"
      ),
      Effect.withSpan("MessageRepo.insertAll", { attributes: { rows: messages.length }, links })
    )

  let failingWrite = Option.none<WriteFailure>()
  const committed = yield* Effect.acquireRelease(PubSub.sliding<void>(1), PubSub.shutdown)
  // Other nodes learn of a commit from a notification sent after it, in a transaction of its own:
  // PostgreSQL serialises the commits of transactions that notify, so one sent inside the writing
  // transaction would make every writer of the table wait on every other. Sent by a fiber of its
  // own, never holding a writer up: commits made while one is on its way make one more, not one
  // each. The payload names this node, whose own poller has been told already. Lost, it costs a
  // probe interval.
  const announcements = yield* Effect.acquireRelease(Queue.dropping<void>(1), Queue.shutdown)
  if (announceCommits) {
    yield* Queue.take(announcements).pipe(
      Effect.zipRight(sql`SELECT pg_notify(${wakeupChannel}, ${announcer})`),
      Effect.catchAll((error) => Effect.logDebug(`Announcing a commit failed: ${error.message}`)),
      Effect.forever,
      Effect.forkScoped
    )
  }
  const pending = yield* Effect.acquireRelease(Queue.unbounded<PendingInsert>(), Queue.shutdown)
  const transactionCounter = SqlSchema.single({
    Request: Schema.Void,
    Result: Schema.Struct({ next: Schema.BigInt }),
    execute: () => sql`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next`
  })(undefined).pipe(Effect.map((row) => row.next), repoErrors)
  const write = (batch: ReadonlyArray<PendingInsert>) =>
    insertAll(
      batch.map((insert) => insert.message),
      // The writer's own fiber runs the INSERT: its span is linked to every request it serves.
      Arr.getSomes(batch.map((insert) => Option.map(insert.span, spanLink)))
    ).pipe(
      Effect.exit,
      Effect.flatMap((stored) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          // Only a write the server refused: one it could not be reached for is the ping's to tell.
          failingWrite = Exit.match(stored, {
            onFailure: (cause) =>
              Option.match(Cause.failureOption(cause), {
                onNone: () => Option.some({ at: now, message: Cause.pretty(cause) }),
                onSome: (error) => error.code === undefined ? failingWrite : Option.some({ at: now, message: error.message })
              }),
            onSuccess: () => Option.none()
          })
          Exit.match(stored, {
            onFailure: (cause) => batch.forEach((insert) => Deferred.unsafeDone(insert.stored, Exit.failCause(cause))),
            onSuccess: (messages) =>
              Arr.zip(batch, messages).forEach(([insert, message]) => Deferred.unsafeDone(insert.stored, Exit.succeed(message)))
          })
          return Exit.isSuccess(stored)
        })
      ),
      Effect.flatMap((stored) =>
        stored ? Effect.zipRight(PubSub.publish(committed, undefined), Queue.offer(announcements, undefined)) : Effect.void
      )
    )
  yield* Queue.takeBetween(pending, 1, maxRowsPerInsert).pipe(
    Effect.flatMap((batch) => write(Chunk.toReadonlyArray(batch))),
    Effect.forever,
    Effect.replicateEffect(writers, { concurrency: "unbounded", discard: true }),
    Effect.forkScoped
  )

  // Built once, so that its decoder is compiled once: the poller reads thousands of rows a second.
  const pollRows = SqlSchema.findAll({
    Request: Schema.Struct({ after: PositionParameter, limit: Schema.Number }),
    Result: MessageRow,
    execute: ({ after, limit }) =>
      sql`SELECT ${sql.literal(columns)} FROM messages
          WHERE (txid, id) > ${position(after)} AND ${finalRows}
          ORDER BY txid, id
          LIMIT ${limit}`
  })
  const newestFinal = SqlSchema.findOne({
    Request: Schema.Void,
    Result: Position,
    execute: () =>
      sql`SELECT txid, id FROM messages
          WHERE ${finalRows}
          ORDER BY txid DESC, id DESC
          LIMIT 1`
  })
  const retentionMark = SqlSchema.findOne({
    Request: Schema.Void,
    Result: Position,
    execute: () => sql`SELECT txid, id FROM message_retention`
  })(undefined).pipe(Effect.map(Option.getOrElse(() => beginning)))
  const retentionLocked = SqlSchema.single({
    Request: Schema.Void,
    Result: Schema.Struct({ locked: Schema.Boolean }),
    execute: () => sql`SELECT pg_try_advisory_xact_lock(${retentionLock}) AS locked`
  })
  const pruneBatch = SqlSchema.findAll({
    Request: Schema.Struct({ after: PositionParameter, retention: Schema.DurationFromSelf, batchSize: Schema.Number }),
    Result: Schema.Struct({ ...positionColumns, expired: Schema.Boolean }),
    execute: ({ after, batchSize, retention }) =>
      sql`
        SELECT txid, id, created_at < now() - ${Duration.toMillis(retention)} * interval '1 millisecond' AS expired
        FROM messages
        WHERE (txid, id) > ${position(after)}
          AND ${finalRows}
          AND (txid, id) < (SELECT txid, id FROM messages ORDER BY txid DESC, id DESC LIMIT 1)
        ORDER BY txid, id
        LIMIT ${batchSize}`
  })
  const deleteThrough = SqlSchema.single({
    Request: Schema.Struct({ after: PositionParameter, through: PositionParameter }),
    Result: Counted,
    execute: ({ after, through }) =>
      sql`
        WITH deleted AS (
          DELETE FROM messages
          WHERE (txid, id) > ${position(after)} AND (txid, id) <= ${position(through)}
          RETURNING 1
        )
        SELECT count(*)::int AS n FROM deleted`
  })

  return MessageRepo.of({
    // No span of its own (one more per POST): the INSERT's span links to the caller's.
    insert: (message) =>
      Effect.all([Deferred.make<Message, DatabaseError>(), Effect.option(Effect.currentSpan)]).pipe(
        Effect.flatMap(([stored, span]) => Queue.offer(pending, { message, stored, span }).pipe(Effect.zipRight(Deferred.await(stored))))
      ),

    // One index range scan on messages_delivery_order, whatever the number of channels or clients.
    poll: (after, limit) => pollRows({ after, limit }).pipe(repoErrors, Effect.withSpan("MessageRepo.poll")),

    head: newestFinal(undefined).pipe(
      Effect.map(Option.getOrElse(() => beginning)),
      repoErrors,
      Effect.withSpan("MessageRepo.head")
    ),

    // The page is cut at `maxBytes` of bodies inside the database, so that a resuming client costs
    // this node one bounded page at a time however large the messages: the window sums the sizes
    // of the (at most `limit`) candidate rows in order, and only those starting below it are sent.
    replay: ({ after, channels, limit, maxBytes, through }) =>
      rows(
        sql`SELECT ${sql.literal(columns)} FROM (
              SELECT ${sql.literal(columns)},
                     sum(octet_length(body)) OVER (ORDER BY txid, id) - octet_length(body) AS bytes_before
              FROM (${
          selectRows(channels, sql`(txid, id) > ${position(after)} AND (txid, id) <= ${position(through)}`, forward, limit)
        }) candidates
            ) page
            WHERE bytes_before < ${maxBytes}
            ORDER BY txid, id`
      ).pipe(repoErrors, Effect.withSpan("MessageRepo.replay")),

    // Reads one row past the page to learn whether there is more.
    history: ({ after, before, channels, limit }) => {
      const query = after !== undefined
        ? selectRows(channels, sql`(txid, id) > ${position(after)} AND ${finalRows}`, forward, limit + 1)
        : selectRows(
          channels,
          sql`${before !== undefined ? sql`(txid, id) < ${position(before)}` : sql`TRUE`} AND ${finalRows}`,
          backward,
          limit + 1
        )
      return rows(query).pipe(
        Effect.map((found) => {
          const page = found.slice(0, limit)
          return { messages: after !== undefined ? page : page.reverse(), more: found.length > limit }
        }),
        repoErrors,
        Effect.withSpan("MessageRepo.history")
      )
    },

    newest: (channels, through) =>
      rows(selectRows(channels, sql`(txid, id) <= ${position(through)}`, backward, 1)).pipe(
        Effect.map((found) => found[0]?.id ?? beginning),
        repoErrors,
        Effect.withSpan("MessageRepo.newest")
      ),

    retainedAfter: retentionMark.pipe(repoErrors, Effect.withSpan("MessageRepo.retainedAfter")),

    // A short transaction per batch: while it runs it holds back every node's delivery horizon.
    // Deletion takes a prefix of the delivery order, so that one position says what is gone: it
    // goes through the last expired message of the batch. A message that sorts before an expired
    // one yet was created later (a created_at a writer or a clock set ahead) goes with it, counted
    // as young: stopping at it would keep everything behind it for good. The scan starts past the
    // retention mark, not at the table's start, where the index still lists the rows deleted by
    // earlier batches until a vacuum (each batch would walk them all again). Only final rows, never
    // the newest.
    prune: (retention, batchSize) =>
      sql.withTransaction(Effect.gen(function*() {
        const nothing: Pruned = { deleted: 0, young: 0, more: false }
        const lock = yield* retentionLocked(undefined)
        if (!lock.locked) return nothing
        const after = yield* retentionMark
        const batch = yield* pruneBatch({ after, retention, batchSize })
        const through = Option.getOrElse(Arr.findLastIndex(batch, (row) => row.expired), () => -1)
        const last = batch[through]
        if (last === undefined) return nothing
        const lastId = messageId(last.txid, last.id)
        const young = batch.slice(0, through).filter((row) => !row.expired).length
        const deleted = yield* deleteThrough({ after, through: lastId })
        yield* sql`
          INSERT INTO message_retention (txid, id) VALUES ${position(lastId)}
          ON CONFLICT (singleton) DO UPDATE SET txid = excluded.txid, id = excluded.id`
        return { deleted: deleted.n, young, more: batch.length === batchSize && through === batch.length - 1 }
      })).pipe(repoErrors, Effect.withSpan("MessageRepo.prune")),

    ping: sql`SELECT 1`.pipe(Effect.asVoid, repoErrors),

    recreateTables: (after) =>
      Effect.gen(function*() {
        yield* migrate.pipe(
          Effect.provideService(SqlClient.SqlClient, sql),
          Effect.catchTag("SqlError", (cause) => Effect.fail(new DatabaseError({ cause })))
        )
        const next = yield* transactionCounter
        if (next <= BigInt(messageIdParts(after).txid)) {
          return yield* new ReplacedDatabaseError({ position: after, nextTxid: next.toString() })
        }
      }).pipe(Effect.withSpan("MessageRepo.recreateTables")),

    probe: SqlSchema.single({
      Request: Schema.Void,
      Result: Schema.Struct({
        lastId: Schema.propertySignature(Schema.BigInt).pipe(Schema.fromKey("last_id")),
        horizon: Schema.String
      }),
      execute: () =>
        sql`
          SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('messages', 'id')::regclass), 0)::text AS last_id,
                 pg_snapshot_xmin(pg_current_snapshot())::text AS horizon`
    })(undefined).pipe(repoErrors),

    announcer,

    committed: Stream.fromPubSub(committed),

    position: SqlSchema.single({
      Request: Schema.Void,
      Result: Schema.Struct({ position: Schema.String }),
      execute: () => sql`SELECT pollcast_position() AS position`
    })(undefined).pipe(Effect.map((row) => row.position), repoErrors),

    transactionCounter,

    failingWrite: Effect.sync(() => failingWrite)
  })
})

/** What pollcast_publish() checks bodies against: this node's MAX_BODY_BYTES (the last node started wins). */
const recordSettings = (maxBodyBytes: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`
      INSERT INTO pollcast_settings (max_body_bytes) VALUES (${maxBodyBytes})
      ON CONFLICT (singleton) DO UPDATE SET max_body_bytes = excluded.max_body_bytes
      WHERE pollcast_settings.max_body_bytes <> excluded.max_body_bytes`).pipe(repoErrors)

/**
 * The repo, once the stored messages are known to belong to this server (see RestoredDatabaseError),
 * announcing its commits as `announcer` (the node's name; a new one by default).
 */
export const layerAs = (announcer?: string) =>
  Layer.scoped(
    MessageRepo,
    Effect.gen(function*() {
      const config = yield* AppConfig
      yield* checkTransactionIds
      yield* recordSettings(config.maxBodyBytes)
      return yield* make(config.notifyWakeup, announcer)
    })
  )

export const layer = layerAs()
