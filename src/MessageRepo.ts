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
import { SqlClient, type SqlError } from "@effect/sql"
import { Chunk, Context, Data, Deferred, Effect, Exit, Layer, Queue, Schema } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import {
  type Channel,
  beginning,
  Message,
  type MessageId,
  messageId,
  messageIdParts,
  type NewMessage
} from "./Message.js"

export class DatabaseError extends Data.TaggedError("DatabaseError")<{ readonly cause: SqlError.SqlError }> {
  override get message() {
    const driver = this.cause.cause instanceof Error ? ` (${this.cause.cause.message})` : ""
    return `The database is unavailable: ${this.cause.message}${driver}`
  }
}

/** Which channels a read covers. */
export type Channels = "all" | NonEmptyReadonlyArray<Channel>

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
  readonly ping: Effect.Effect<void, DatabaseError>
}>() {}

const Row = Schema.Struct({
  id: Schema.String,
  txid: Schema.String,
  channel: Schema.String,
  author: Schema.String,
  body: Schema.String,
  created_at: Schema.DateFromSelf
})
type Row = typeof Row.Type

const decodeRows = Schema.decodeUnknown(Schema.Array(Row))

/** Inserts written at once (each takes a connection from the pool), and rows per INSERT at most. */
const writers = 2
const maxRowsPerInsert = 500

interface PendingInsert {
  readonly message: NewMessage
  readonly stored: Deferred.Deferred<Message, DatabaseError>
}

// The database's constraints hold what the Message schema would check, so rows skip re-validation.
const toMessage = (row: Row) =>
  new Message({
    id: messageId(row.txid, row.id),
    channel: row.channel as Channel,
    author: row.author,
    body: row.body,
    createdAt: row.created_at
  }, true)

const columns = "id, txid, channel, author, body, created_at"

/** Needs a Scope: the writers live in it. */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  // A row that does not decode is a defect (the schema and the table disagree), not an outage.
  const rows = <E, R>(query: Effect.Effect<ReadonlyArray<unknown>, E, R>) =>
    Effect.flatMap(query, (found) => Effect.orDie(decodeRows(found))).pipe(
      Effect.map((decoded) => decoded.map(toMessage))
    )

  const position = (id: MessageId) => {
    const { seq, txid } = messageIdParts(id)
    return sql`(${txid}::xid8, ${seq}::bigint)`
  }
  const channelFilter = (channels: Channels) =>
    channels === "all" ? sql`TRUE` : sql.in("channel", channels)
  const finalRows = sql`txid < pg_snapshot_xmin(pg_current_snapshot())`

  const databaseError = <A, R>(effect: Effect.Effect<A, SqlError.SqlError | DatabaseError, R>) =>
    Effect.catchTag(effect, "SqlError", (cause) => Effect.fail(new DatabaseError({ cause })))

  // The rows of a multi-row INSERT take their ids, and come back, in the order of its VALUES.
  const insertAll = (messages: ReadonlyArray<NewMessage>) =>
    rows(
      sql`INSERT INTO messages ${sql.insert(messages.map(({ author, body, channel }) => ({ channel, author, body })))}
          RETURNING ${sql.literal(columns)}`
    ).pipe(
      databaseError,
      Effect.filterOrDieMessage(
        (stored) => stored.length === messages.length,
        "INSERT returned a different number of rows than it was given"
      ),
      Effect.withSpan("MessageRepo.insertAll", { attributes: { rows: messages.length } })
    )

  const pending = yield* Effect.acquireRelease(Queue.unbounded<PendingInsert>(), Queue.shutdown)
  const write = (batch: ReadonlyArray<PendingInsert>) =>
    insertAll(batch.map((insert) => insert.message)).pipe(
      Effect.exit,
      Effect.map((stored) => {
        batch.forEach((insert, index) =>
          Deferred.unsafeDone(insert.stored, Exit.map(stored, (messages) => messages[index]!))
        )
      })
    )
  yield* Queue.takeBetween(pending, 1, maxRowsPerInsert).pipe(
    Effect.flatMap((batch) => write(Chunk.toReadonlyArray(batch))),
    Effect.forever,
    Effect.replicateEffect(writers, { concurrency: "unbounded", discard: true }),
    Effect.forkScoped
  )

  return MessageRepo.of({
    insert: (message) =>
      Effect.flatMap(Deferred.make<Message, DatabaseError>(), (stored) =>
        Queue.offer(pending, { message, stored }).pipe(Effect.zipRight(Deferred.await(stored)))),

    // One index range scan on messages_delivery_order, whatever the number of channels or clients.
    poll: (after, limit) =>
      rows(
        sql`SELECT ${sql.literal(columns)} FROM messages
            WHERE (txid, id) > ${position(after)} AND ${finalRows}
            ORDER BY txid, id
            LIMIT ${limit}`
      ).pipe(databaseError, Effect.withSpan("MessageRepo.poll")),

    // Both columns arrive as decimal strings (int8 and xid8 are not parsed into numbers).
    head: sql<{ readonly txid: string; readonly id: string }>`
      SELECT txid, id FROM messages
      WHERE ${finalRows}
      ORDER BY txid DESC, id DESC
      LIMIT 1`.pipe(
      Effect.map((found) => (found[0] === undefined ? beginning : messageId(found[0].txid, found[0].id))),
      databaseError,
      Effect.withSpan("MessageRepo.head")
    ),

    replay: ({ after, channels, limit, through }) =>
      rows(
        sql`SELECT ${sql.literal(columns)} FROM messages
            WHERE (txid, id) > ${position(after)} AND (txid, id) <= ${position(through)}
              AND ${channelFilter(channels)}
            ORDER BY txid, id
            LIMIT ${limit}`
      ).pipe(databaseError, Effect.withSpan("MessageRepo.replay")),

    // Reads one row past the page to learn whether there is more.
    history: ({ after, before, channels, limit }) => {
      const query = after !== undefined
        ? sql`SELECT ${sql.literal(columns)} FROM messages
              WHERE (txid, id) > ${position(after)} AND ${finalRows} AND ${channelFilter(channels)}
              ORDER BY txid, id
              LIMIT ${limit + 1}`
        : sql`SELECT ${sql.literal(columns)} FROM messages
              WHERE ${before !== undefined ? sql`(txid, id) < ${position(before)}` : sql`TRUE`}
                AND ${finalRows} AND ${channelFilter(channels)}
              ORDER BY txid DESC, id DESC
              LIMIT ${limit + 1}`
      return rows(query).pipe(
        Effect.map((found) => {
          const page = found.slice(0, limit)
          return { messages: after !== undefined ? page : page.reverse(), more: found.length > limit }
        }),
        databaseError,
        Effect.withSpan("MessageRepo.history")
      )
    },

    ping: sql`SELECT 1`.pipe(Effect.asVoid, databaseError)
  })
})

export const layer = Layer.scoped(MessageRepo, make)
