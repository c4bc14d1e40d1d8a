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
 */
import { Context, Duration, Effect, Layer, Option, Scope } from "effect"
import { isNonEmptyReadonlyArray } from "effect/Array"
import { Broadcast, messageFrame, Selection, type Sink } from "./Broadcast.js"
import { AppConfig } from "./Config.js"
import type { MessageId } from "./Message.js"
import { type Channels, MessageRepo } from "./MessageRepo.js"
import * as Sse from "./Sse.js"

/** The client's end of the stream, as the HTTP server provides it. */
export interface ClientConnection {
  /** Queues bytes for the client; false once its buffers are full (wait for `drained`). */
  readonly write: (bytes: Uint8Array) => boolean
  /** Bytes queued but not yet handed to the operating system. */
  readonly queued: () => number
  /** Completes once the queued bytes are flushed. */
  readonly drained: Effect.Effect<void>
  /** Ends the stream normally; the client will reconnect. */
  readonly end: () => void
  /** Drops the connection at once, whatever is queued. */
  readonly destroy: () => void
}

export interface OpenOptions {
  readonly channels: Channels
  /** The id of the last message the client has (from Last-Event-ID); none: live from now. */
  readonly lastEventId: Option.Option<MessageId>
  readonly connection: ClientConnection
}

/** A connection as a Broadcast sink: live frames are held back until the replay is done. */
class ClientStream implements Sink {
  private live = false
  private ended = false
  private held: Array<Uint8Array> = []
  private heldBytes = 0

  constructor(private readonly connection: ClientConnection) {}

  /** Frames that come before anything live: the retry field and the replay. */
  push(bytes: Uint8Array): boolean {
    return this.ended || this.connection.write(bytes)
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

  cutOff() {
    this.ended = true
    this.connection.destroy()
  }

  end() {
    if (this.ended) return
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
  /** Ends every open stream, and any opened later: for shutdown. */
  readonly drain: Effect.Effect<void>
}>() {}

const replayPageSize = 500

export const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const repo = yield* MessageRepo
  const broadcast = yield* Broadcast
  let connections = 0
  let draining = false
  const retryFrame = new TextEncoder().encode(Sse.retry(Duration.toMillis(config.sseRetry)))
  // One Selection per distinct set of channels, shared by the clients that follow it.
  const selections = new Map<string, Selection>()
  const selectionOf = (channels: Channels) => {
    const selection = Selection.of(channels)
    const shared = selections.get(selection.key)
    if (shared !== undefined) return shared
    selections.set(selection.key, selection)
    return selection
  }

  /** Writes the stored messages in (after, through] a page at a time, as fast as the client reads. */
  const replay = (client: ClientStream, connection: ClientConnection, channels: Channels, after: MessageId, through: MessageId) =>
    Effect.iterate(Option.some(after), {
      while: (from): from is Option.Some<MessageId> => Option.isSome(from) && from.value < through && !draining,
      body: (from) =>
        repo.replay({ channels, after: from.value, through, limit: replayPageSize }).pipe(
          Effect.flatMap((messages) =>
            messages.length > 0 && !client.push(Buffer.concat(messages.map(messageFrame)))
              ? Effect.as(connection.drained, messages)
              : Effect.succeed(messages)
          ),
          Effect.map((messages) =>
            isNonEmptyReadonlyArray(messages) && messages.length === replayPageSize
              ? Option.some(messages[messages.length - 1]!.id)
              : Option.none()
          )
        )
    })

  const open = ({ channels, connection, lastEventId }: OpenOptions) => {
    const client = new ClientStream(connection)
    return Effect.gen(function*() {
      connections++
      yield* Effect.scopeWith((scope) => Scope.addFinalizer(scope, Effect.sync(() => connections--)))
      client.push(retryFrame)
      let after = lastEventId
      if (Option.isSome(lastEventId)) {
        const reached = yield* broadcast.position
        if (reached > lastEventId.value) {
          yield* replay(client, connection, channels, lastEventId.value, reached)
          after = Option.some(reached)
        }
      }
      if (draining) return client.end()
      const position = yield* broadcast.subscribe({ selection: selectionOf(channels), after, sink: client })
      if (Option.isSome(after) && position > after.value) {
        yield* replay(client, connection, channels, after.value, position)
      }
      client.goLive()
    }).pipe(
      // The client reconnects with the id of the last message it got, and loses nothing.
      Effect.catchTag("DatabaseError", (error) =>
        Effect.logWarning("Ending an event stream: its replay could not be read", error).pipe(
          Effect.zipRight(Effect.sync(() => client.end()))
        ))
    )
  }

  return EventStream.of({
    open,
    connections: Effect.sync(() => connections),
    drain: Effect.suspend(() => {
      draining = true
      return broadcast.close
    })
  })
})

export const layer = Layer.effect(EventStream, make)
