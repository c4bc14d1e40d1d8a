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
 */
import { Context, Duration, Effect, Layer, Option, Ref, type Scope } from "effect"
import { isNonEmptyReadonlyArray } from "effect/Array"
import { Readable } from "node:stream"
import { Broadcast, messageFrame, Selection, type Sink } from "./Broadcast.js"
import { AppConfig } from "./Config.js"
import type { MessageId } from "./Message.js"
import { type Channels, MessageRepo } from "./MessageRepo.js"
import * as Sse from "./Sse.js"

export interface OpenOptions {
  readonly channels: Channels
  /** The id of the last message the client has (from Last-Event-ID); none: live from now. */
  readonly lastEventId: Option.Option<MessageId>
  /** Cuts the client's connection; called if the client falls too far behind. */
  readonly onOverflow: () => void
}

/**
 * The body of one `text/event-stream` response: frames are pushed into a Readable that the HTTP
 * server pipes to the socket. Live frames are held back until the replay is done.
 */
class ClientStream implements Sink {
  readonly body: Readable
  private live = false
  private ended = false
  private held: Array<Uint8Array> = []
  private heldBytes = 0
  private wanted: (() => void) | undefined

  constructor(private readonly onOverflow: () => void) {
    this.body = new Readable({
      read: () => {
        const wake = this.wanted
        this.wanted = undefined
        wake?.()
      }
    })
  }

  /** Frames that come before anything live: the retry field and the replay. */
  push(bytes: Uint8Array) {
    if (!this.ended) this.body.push(bytes)
  }

  write(frames: Uint8Array) {
    if (this.ended) return
    if (this.live) {
      this.body.push(frames)
    } else {
      this.held.push(frames)
      this.heldBytes += frames.length
    }
  }

  backlog() {
    return this.body.readableLength + this.heldBytes
  }

  cutOff() {
    this.onOverflow()
  }

  end() {
    if (this.ended) return
    this.ended = true
    this.body.push(null)
  }

  goLive() {
    for (const frames of this.held) this.push(frames)
    this.held = []
    this.heldBytes = 0
    this.live = true
  }

  /** Waits until the client has taken most of what was pushed. */
  readonly room = Effect.async<void>((resume) => {
    if (this.ended || this.body.readableLength < this.body.readableHighWaterMark) return resume(Effect.void)
    this.wanted = () => resume(Effect.void)
    return Effect.sync(() => {
      this.wanted = undefined
    })
  })
}

export class EventStream extends Context.Tag("pollcast/EventStream")<EventStream, {
  /** The body of the client's `text/event-stream` response, fed for as long as the scope lasts. */
  readonly open: (options: OpenOptions) => Effect.Effect<Readable, never, Scope.Scope>
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
  const connections = yield* Ref.make(0)
  let draining = false
  const retryFrame = new TextEncoder().encode(Sse.retry(Duration.toMillis(config.sseRetry)))

  /** Pushes the stored messages in (after, through] a page at a time, as fast as the client reads. */
  const replay = (client: ClientStream, channels: Channels, after: MessageId, through: MessageId) =>
    Effect.iterate(Option.some(after), {
      while: (from): from is Option.Some<MessageId> => Option.isSome(from) && from.value < through && !draining,
      body: (from) =>
        repo.replay({ channels, after: from.value, through, limit: replayPageSize }).pipe(
          Effect.tap((messages) => {
            if (messages.length > 0) client.push(Buffer.concat(messages.map(messageFrame)))
          }),
          Effect.zipLeft(client.room),
          Effect.map((messages) =>
            isNonEmptyReadonlyArray(messages) && messages.length === replayPageSize
              ? Option.some(messages[messages.length - 1]!.id)
              : Option.none()
          )
        )
    })

  const open = ({ channels, lastEventId, onOverflow }: OpenOptions) =>
    Effect.gen(function*() {
      yield* Effect.acquireRelease(Ref.update(connections, (n) => n + 1), () => Ref.update(connections, (n) => n - 1))
      const client = new ClientStream(onOverflow)
      client.push(retryFrame)
      const selection = Selection.of(channels)

      const feed = Effect.gen(function*() {
        let after = lastEventId
        if (Option.isSome(lastEventId)) {
          const reached = yield* broadcast.position
          if (reached > lastEventId.value) {
            yield* replay(client, channels, lastEventId.value, reached)
            after = Option.some(reached)
          }
        }
        if (draining) return client.end()
        const position = yield* broadcast.subscribe({ selection, after, sink: client })
        if (Option.isSome(after) && position > after.value) {
          yield* replay(client, channels, after.value, position)
        }
        client.goLive()
      }).pipe(
        // The client reconnects with the id of the last message it got, and loses nothing.
        Effect.catchTag("DatabaseError", (error) =>
          Effect.logWarning("Ending an event stream: its replay could not be read", error).pipe(
            Effect.zipRight(Effect.sync(() => client.end()))
          ))
      )
      yield* Effect.forkScoped(feed)
      return client.body
    })

  return EventStream.of({
    open,
    connections: Ref.get(connections),
    drain: Effect.suspend(() => {
      draining = true
      return broadcast.close
    })
  })
})

export const layer = Layer.effect(EventStream, make)
