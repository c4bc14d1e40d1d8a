/**
 * One client's event stream: a `retry:` field, then (when it resumes from an id) what it missed,
 * read from the database, then the live messages of the Broadcast, with no gap and no duplicate at
 * the hand-over.
 *
 * The hand-over: registering with the Broadcast returns the position it has fanned out so far,
 * atomically, so every message after that position will be written to the client, and everything
 * up to it is final in the database. Replay (resumed-from, position], then let the live frames
 * (held back meanwhile) through. A long replay runs before registering, up to the position of the
 * moment, so that live frames do not pile up in the meantime; the short tail that was fanned out
 * during it is replayed after registering.
 *
 * Once live, a client costs no fiber: the Broadcast's fan-out writes to its connection directly.
 *
 * What a client may make the node hold is bounded: the replay is read a page at a time, each page
 * bounded in rows and bytes, and the next is read only once the client has taken the last; a client
 * that takes nothing for CLIENT_STALL_TIMEOUT is disconnected. The channel selections that clients
 * share live exactly as long as a client uses them.
 *
 * A resuming client whose id this database never issued (ahead of its newest message, as after a
 * restore elsewhere), or older than what retention kept, is told so with a `reset` event carrying
 * the position it continues from, and then gets what follows that position.
 */
import { Context, Duration, Effect, Layer, MetricLabel, Option, Scope } from "effect"
import { isNonEmptyReadonlyArray } from "effect/Array"
import { Broadcast, bytesWritten, type CutOffReason, messageFrameAfter, type Sink } from "./Broadcast.js"
import { AppConfig } from "../Config.js"
import type { MessageId } from "../Domain/Message.js"
import { type Channels, Selection } from "../Domain/Channels.js"
import { MessageRepo } from "../Storage/MessageRepo.js"
import type { ResumePoint, Snapshot } from "../Domain/Snapshot.js"
import * as Sse from "./Sse.js"
import { counter, gauge } from "../Metrics.js"

/** The client's end of the stream, as the HTTP server provides it. */
export interface ClientConnection {
  /** Queues bytes for the client; false once its buffers are full (wait for `drained`). */
  readonly write: (bytes: Uint8Array) => boolean
  /** Bytes queued but not yet handed to the operating system. */
  readonly queued: () => number
  /** Bytes handed to the operating system so far: it grows while the client reads. */
  readonly flushed: () => number
  /** Completes once the queued bytes are flushed. */
  readonly drained: Effect.Effect<void>
  /** Ends the stream normally; the client will reconnect. */
  readonly end: () => void
  /** Drops the connection at once, whatever is queued. */
  readonly destroy: () => void
}

/**
 * Why a stream ended: the client (or the network) closed it; the node shut down; it was cut off
 * for its backlog or for reading nothing; its token expired; the database failed during its replay.
 */
export type EndReason = "closed" | "shutdown" | CutOffReason | "token_expired" | "database_error"

export const openStreams = gauge("pollcast_event_streams_open", "Event streams open on this node").register()
export const streamsOpened = counter("pollcast_event_streams_opened_total", "Event streams opened (admitted) on this node").register()
export const streamsEnded = counter("pollcast_event_streams_ended_total", "Event streams ended, by reason: closed (by the client or the network), shutdown, backlog or stalled (cut off), token_expired, database_error")
export const replayPages = counter("pollcast_replay_pages_total", "Pages of stored messages replayed to resuming clients").register()
export const resets = counter("pollcast_stream_resets_total", "reset events sent to resuming clients, by reason: ahead (an id never issued here), expired (removed by retention)")

const reasonLabel = (reason: string) => [MetricLabel.make("reason", reason)]
// One constant label array per value: a metric finds its series by the array's identity.
const endLabels: Record<EndReason, ReadonlyArray<MetricLabel.MetricLabel>> = {
  closed: reasonLabel("closed"),
  shutdown: reasonLabel("shutdown"),
  backlog: reasonLabel("backlog"),
  stalled: reasonLabel("stalled"),
  token_expired: reasonLabel("token_expired"),
  database_error: reasonLabel("database_error")
}
const resetLabels = { ahead: reasonLabel("ahead"), expired: reasonLabel("expired") }
const replayBytes = [MetricLabel.make("kind", "replay")]
const controlBytes = [MetricLabel.make("kind", "control")]

export interface OpenOptions {
  readonly channels: Channels
  /**
   * The id of the last message the client has (from Last-Event-ID), with the snapshot it began
   * from if it did (see Snapshot); none: live from now.
   */
  readonly lastEventId: Option.Option<ResumePoint>
  readonly connection: ClientConnection
  /** When the client's access token expires (epoch milliseconds): the stream ends then. None: never. */
  readonly expiresAt: number | undefined
}

// Node's timers hold at most 2^31 - 1 ms (24.8 days); a later expiry is reached in steps.
const maxTimerDelay = 2 ** 31 - 1

/** A connection as a Broadcast sink: live frames are held back until the replay is done. */
class ClientStream implements Sink {
  private live = false
  private ended = false
  /** Set when the server ends the stream; a stream that closes without it was closed by the client. */
  endReason: EndReason | undefined = undefined
  private held: Array<Uint8Array> = []
  private heldBytes = 0
  /** A plain timer, not a fiber: an idle stream must not cost one. */
  private expiry: ReturnType<typeof setTimeout> | undefined = undefined

  constructor(private readonly connection: ClientConnection) {}

  /** Ends the stream at epoch millisecond `at`, when its token expires; the client reconnects with a fresh one. */
  expireAt(at: number) {
    const left = at - Date.now()
    this.expiry = left > maxTimerDelay
      ? setTimeout(ClientStream.expireLater, maxTimerDelay, this, at)
      : setTimeout(ClientStream.expireNow, Math.max(0, left), this)
  }

  private static expireLater(client: ClientStream, at: number) {
    client.expireAt(at)
  }

  private static expireNow(client: ClientStream) {
    if (client.ended) return
    client.connection.write(Sse.tokenExpiredFrame)
    client.end("token_expired")
  }

  /** Frees what the stream holds once it has closed. */
  release() {
    if (this.expiry !== undefined) clearTimeout(this.expiry)
  }

  /** Frames that come before anything live: the retry field and the replay. */
  push(bytes: Uint8Array): boolean {
    return this.ended || this.connection.write(bytes)
  }

  get open() {
    return !this.ended
  }

  write(frames: Uint8Array) {
    if (this.ended) return
    if (this.live) {
      this.connection.write(frames)
    } else {
      this.held.push(frames)
      this.heldBytes += frames.length
    }
  }

  backlog() {
    return this.connection.queued() + this.heldBytes
  }

  flushed() {
    return this.connection.flushed()
  }

  cutOff(reason: CutOffReason) {
    this.endReason ??= reason
    this.ended = true
    this.held = []
    this.heldBytes = 0
    this.connection.destroy()
  }

  end(reason: EndReason = "shutdown") {
    if (this.ended) return
    this.endReason ??= reason
    this.ended = true
    this.connection.end()
  }

  goLive() {
    for (const frames of this.held) this.push(frames)
    this.held = []
    this.heldBytes = 0
    this.live = true
  }
}

export class EventStream extends Context.Tag("pollcast/EventStream")<EventStream, {
  /**
   * Writes the stream's start to the connection, replays what the client missed, and registers it
   * for live messages until the scope closes (when the connection does). Completes once live.
   */
  readonly open: (options: OpenOptions) => Effect.Effect<void, never, Scope.Scope>
  /** How many event streams are open. */
  readonly connections: Effect.Effect<number>
  /** How many distinct channel selections the open streams follow. */
  readonly selections: Effect.Effect<number>
  /** Ends every open stream, and any opened later: for shutdown. */
  readonly drain: Effect.Effect<void>
}>() {}

/** A replay page: at most this many rows, and (but for its first row) this many bytes of bodies. */
export const replayPageRows = 500
export const replayPageBytes = 64 * 1024

interface SharedSelection {
  readonly selection: Selection
  users: number
}

export const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const repo = yield* MessageRepo
  const broadcast = yield* Broadcast
  let connections = 0
  let draining = false
  const retryFrame = Sse.retryFrame(Duration.toMillis(config.sseRetry))

  // One Selection per distinct set of channels, shared by the clients that follow it, and dropped
  // with the last of them: the channel sets are the clients' to choose, and there are many.
  const selections = new Map<string, SharedSelection>()
  const acquireSelection = (channels: Channels) => {
    const selection = Selection.of(channels)
    const shared = selections.get(selection.key) ?? { selection, users: 0 }
    if (shared.users === 0) selections.set(selection.key, shared)
    shared.users++
    return shared
  }
  const releaseSelection = (shared: SharedSelection) => {
    if (--shared.users === 0) selections.delete(shared.selection.key)
  }

  /** Waits until the client has taken what it was written; false if it took nothing for too long. */
  const drainedInTime = (connection: ClientConnection) =>
    connection.drained.pipe(
      Effect.timeoutTo({ duration: config.clientStallTimeout, onSuccess: () => true, onTimeout: () => false })
    )

  /**
   * Writes the stored messages in (after, through] a page at a time, each page once the client has
   * taken the one before. A client that stops reading is cut off after CLIENT_STALL_TIMEOUT.
   */
  const replay = (
    client: ClientStream,
    connection: ClientConnection,
    channels: Channels,
    after: MessageId,
    through: MessageId,
    snapshot: Snapshot | undefined
  ) =>
    Effect.iterate(Option.some(after), {
      while: (from): from is Option.Some<MessageId> =>
        Option.isSome(from) && from.value < through && !draining && client.open,
      body: (from) =>
        repo.replay({ channels, after: from.value, through, limit: replayPageRows, maxBytes: replayPageBytes }).pipe(
          // Retention may delete what lies ahead of a replay while it runs. Read after the page,
          // the position it has deleted through tells whether the page may lack rows: if it is past
          // `from`, the page is dropped and the client told (a reset) that it goes on from there.
          Effect.zip(repo.retainedAfter),
          Effect.flatMap(([messages, kept]) => {
            if (kept > from.value) {
              resets.unsafeUpdate(1, resetLabels.expired)
              client.push(Sse.resetFrame("expired", kept))
              return Effect.succeed(Option.some(kept))
            }
            if (!isNonEmptyReadonlyArray(messages)) return Effect.succeed(Option.none<MessageId>())
            const next = Option.some(messages[messages.length - 1]!.id)
            const page = Buffer.concat(messages.flatMap((message) => messageFrameAfter(message, snapshot) ?? []))
            replayPages.unsafeUpdate(1, [])
            bytesWritten.unsafeUpdate(page.length, replayBytes)
            if (client.push(page)) return Effect.succeed(next)
            return Effect.map(drainedInTime(connection), (taken) => {
              if (taken) return next
              client.cutOff("stalled")
              return Option.none<MessageId>()
            })
          })
        )
    }).pipe(
      Effect.tap(() =>
        client.open ? Effect.void : Effect.logInfo(
          `Disconnected a client that read nothing of its replay for ${
            Duration.format(config.clientStallTimeout)
          } (CLIENT_STALL_TIMEOUT)`
        )
      )
    )

  /**
   * Where a client resuming from `from` continues: from there, unless this database never issued
   * the id or retention has removed what follows it; then the client is told with a `reset` event.
   * Replays up to what this node has fanned out, and returns the position replayed to, and the
   * snapshot that still filters what follows (none after a reset).
   */
  const resume = (client: ClientStream, connection: ClientConnection, channels: Channels, resumed: ResumePoint) =>
    Effect.gen(function*() {
      const reached = yield* broadcast.position
      const from = resumed.after
      let start = from
      let snapshot = resumed.snapshot
      // A snapshot this server has not reached was not taken on it: as for an id it never issued.
      const unreached = snapshot !== undefined && snapshot.xmax > (yield* repo.transactionCounter)
      if (from > reached || unreached) {
        // Ahead of this node's poller: fine if another node delivered it, unless no such message exists.
        const head = yield* repo.head
        if (from > head || unreached) {
          snapshot = undefined
          // It goes on from the newest message it follows (or where retention has deleted
          // through), not from the head: that would tell anyone how far every channel has got.
          // Nothing in its channels lies between there and the head.
          const newest = yield* repo.newest(channels, head)
          const kept = yield* repo.retainedAfter
          start = newest > kept ? newest : kept
          resets.unsafeUpdate(1, resetLabels.ahead)
          client.push(Sse.resetFrame("ahead", start))
        }
      } else if (from < reached) {
        const kept = yield* repo.retainedAfter
        if (from < kept) {
          resets.unsafeUpdate(1, resetLabels.expired)
          client.push(Sse.resetFrame("expired", kept))
          start = kept
          snapshot = undefined
        }
      }
      if (start < reached) {
        yield* replay(client, connection, channels, start, reached, snapshot)
        return { position: reached, snapshot }
      }
      return { position: start, snapshot }
    })

  /**
   * What a stream's scope does as it closes. Made here, not in `open`: a finalizer keeps what the
   * function that made it can see alive for as long as the stream lasts, and this one sees only
   * what it needs. It is the finalizer itself (Scope.addFinalizerExit): an effect made ahead
   * for it would be kept as long too.
   */
  const closing = (client: ClientStream, shared: SharedSelection) => () =>
    Effect.suspend(() => {
      connections--
      releaseSelection(shared)
      client.release()
      const reason = client.endReason ?? "closed"
      streamsEnded.unsafeUpdate(1, endLabels[reason])
      openStreams.unsafeUpdate(connections, [])
      return Effect.logDebug("Event stream closed").pipe(Effect.annotateLogs({ reason, streams: connections }))
    })

  const open = ({ channels, connection, expiresAt, lastEventId }: OpenOptions) => {
    const client = new ClientStream(connection)
    return Effect.gen(function*() {
      const shared = acquireSelection(channels)
      connections++
      streamsOpened.unsafeUpdate(1, [])
      openStreams.unsafeUpdate(connections, [])
      yield* Effect.logDebug("Event stream opened").pipe(
        Effect.annotateLogs({ channels: channels === "all" ? "*" : channels.join(","), streams: connections })
      )
      yield* Effect.scopeWith((scope) => Scope.addFinalizerExit(scope, closing(client, shared)))
      if (expiresAt !== undefined) client.expireAt(expiresAt)
      client.push(retryFrame)
      bytesWritten.unsafeUpdate(retryFrame.length, controlBytes)
      let after = Option.none<MessageId>()
      let snapshot: Snapshot | undefined
      if (Option.isSome(lastEventId)) {
        const resumed = yield* resume(client, connection, channels, lastEventId.value)
        after = Option.some(resumed.position)
        snapshot = resumed.snapshot
      }
      if (!client.open) return
      if (draining) return client.end()
      const position = yield* broadcast.subscribe({ selection: shared.selection, after, snapshot, sink: client })
      if (Option.isSome(after) && position > after.value) {
        yield* replay(client, connection, channels, after.value, position, snapshot)
      }
      client.goLive()
    }).pipe(
      // The client reconnects with the id of the last message it got, and loses nothing. The
      // outage itself is the poller's to report; one line per stream would flood the log.
      Effect.catchTag("DatabaseError", (error) =>
        Effect.logDebug(`Ending an event stream: ${error.message}`).pipe(
          Effect.zipRight(Effect.sync(() => client.end("database_error")))
        ))
    )
  }

  return EventStream.of({
    open,
    connections: Effect.sync(() => connections),
    selections: Effect.sync(() => selections.size),
    drain: Effect.suspend(() => {
      draining = true
      return broadcast.close
    })
  })
})

export const layer = Layer.effect(EventStream, make)
