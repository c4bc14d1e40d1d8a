/**
 * One client's event stream: a `retry:` field, then (when it resumes from an id) what it missed,
 * read from the database, then the live messages of the Broadcast, with no gap and no duplicate at
 * the hand-over.
 *
 * The hand-over: subscribe first, then read the position the Broadcast had reached. The Broadcast
 * moves its position before it publishes, so every message after that position is in the
 * subscription, and everything up to it is final in the database. Replay (resumed-from, position],
 * then send the live messages after it. A long replay runs before subscribing, up to the position
 * of the moment, so that live messages do not pile up in the meantime; the short tail that the
 * poller published during it is replayed after subscribing.
 */
import { Chunk, Context, Deferred, Duration, Effect, Layer, Option, Ref, Stream } from "effect"
import { isNonEmptyReadonlyArray } from "effect/Array"
import { Broadcast, messageFrame, Selection } from "./Broadcast.js"
import { AppConfig } from "./Config.js"
import type { MessageId } from "./Message.js"
import { type Channels, type DatabaseError, MessageRepo } from "./MessageRepo.js"
import * as Sse from "./Sse.js"

export interface OpenOptions {
  readonly channels: Channels
  /** The id of the last message the client has (from Last-Event-ID); none: live from now. */
  readonly lastEventId: Option.Option<MessageId>
  /** Cuts the client's connection; the stream calls it if the client falls too far behind. */
  readonly onOverflow: Effect.Effect<void>
}

export class EventStream extends Context.Tag("pollcast/EventStream")<EventStream, {
  /** The bytes of the client's `text/event-stream` response body. */
  readonly open: (options: OpenOptions) => Stream.Stream<Uint8Array, DatabaseError>
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
  const draining = yield* Deferred.make<void>()
  const retryFrame = new TextEncoder().encode(Sse.retry(Duration.toMillis(config.sseRetry)))

  /** Frames of the stored messages in (after, through], a page at a time. */
  const replay = (channels: Channels, after: MessageId, through: MessageId): Stream.Stream<Uint8Array, DatabaseError> =>
    after >= through ? Stream.empty : Stream.paginateChunkEffect(after, (from) =>
      repo.replay({ channels, after: from, through, limit: replayPageSize }).pipe(
        Effect.map((messages) =>
          [
            isNonEmptyReadonlyArray(messages) ? Chunk.of(Buffer.concat(messages.map(messageFrame))) : Chunk.empty(),
            isNonEmptyReadonlyArray(messages) && messages.length === replayPageSize
              ? Option.some(messages[messages.length - 1]!.id)
              : Option.none()
          ] as const
        )
      ))

  /** Subscribes, replays what was published between `after` and the subscription, then goes live. */
  const live = (selection: Selection, channels: Channels, after: Option.Option<MessageId>, onOverflow: Effect.Effect<void>) =>
    Stream.unwrapScoped(
      Effect.map(broadcast.subscribe({ selection, after, onOverflow }), (subscription) =>
        Option.match(after, {
          onNone: () => subscription.frames,
          onSome: (from) => Stream.concat(replay(channels, from, subscription.position), subscription.frames)
        }))
    )

  const open = ({ channels, lastEventId, onOverflow }: OpenOptions) => {
    const selection = Selection.of(channels)
    const messages = Option.match(lastEventId, {
      onNone: () => live(selection, channels, Option.none(), onOverflow),
      onSome: (from) =>
        Stream.unwrap(Effect.map(broadcast.position, (reached) =>
          reached > from
            ? Stream.concat(replay(channels, from, reached), live(selection, channels, Option.some(reached), onOverflow))
            : live(selection, channels, Option.some(from), onOverflow)
        ))
    })
    return Stream.concat(Stream.succeed(retryFrame), messages).pipe(
      Stream.interruptWhen(Deferred.await(draining)),
      (stream) =>
        Stream.unwrapScoped(
          Effect.acquireRelease(Ref.update(connections, (n) => n + 1), () => Ref.update(connections, (n) => n - 1))
            .pipe(Effect.as(stream))
        )
    )
  }

  return EventStream.of({
    open,
    connections: Ref.get(connections),
    drain: Deferred.succeed(draining, undefined).pipe(Effect.asVoid)
  })
})

export const layer = Layer.effect(EventStream, make)
