/**
 * Fan-out of polled messages to every connected client of this node, through one PubSub.
 *
 * Each message's SSE frame is encoded once, when it is published; each batch then joins the frames
 * a given channel selection wants once, and every client with that selection writes the same bytes.
 * A client's backlog is bounded: one that falls more than CLIENT_BUFFER messages behind is cut off
 * (its EventSource reconnects with Last-Event-ID and loses nothing), so it cannot hold the others
 * back or make the node hoard messages for it.
 */
import { Chunk, Context, Effect, Layer, Option, PubSub, Ref, type Scope, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { AppConfig } from "./Config.js"
import { type Channel, encodeMessage, type Message, type MessageId, maxId } from "./Message.js"
import type { Channels } from "./MessageRepo.js"
import * as Sse from "./Sse.js"

/** The channels one client follows, with a key shared by every client following the same ones. */
export class Selection {
  private constructor(readonly key: string, private readonly channels: ReadonlySet<string> | undefined) {}

  static of(channels: Channels): Selection {
    if (channels === "all") return new Selection("*", undefined)
    const unique = [...new Set(channels)].sort()
    return new Selection(unique.join(","), new Set(unique))
  }

  includes(channel: Channel): boolean {
    return this.channels === undefined || this.channels.has(channel)
  }
}

const encoder = new TextEncoder()

/** The SSE frame of one message: `id`, `event: message`, and the message as JSON in `data`. */
export const messageFrame = (message: Message): Uint8Array =>
  encoder.encode(Sse.event({ id: message.id, event: "message", data: JSON.stringify(encodeMessage(message)) }))

const join = (frames: ReadonlyArray<Uint8Array>): Uint8Array | undefined =>
  frames.length === 0 ? undefined : frames.length === 1 ? frames[0] : Buffer.concat(frames)

interface Delivery {
  readonly id: MessageId
  readonly channel: Channel
  readonly frame: Uint8Array
}

/** One poll's messages, in delivery order, with their frames. */
export class Batch {
  readonly _tag = "Batch"
  readonly first: MessageId
  readonly last: MessageId
  private readonly joined = new Map<string, Uint8Array | undefined>()

  constructor(
    readonly deliveries: NonEmptyReadonlyArray<Delivery>,
    /** How many messages this node had published once this batch was. */
    readonly publishedThrough: number
  ) {
    this.first = deliveries[0].id
    this.last = deliveries[deliveries.length - 1]!.id
  }

  /** The frames of the messages `selection` wants that come after `after`, joined into one chunk. */
  framesFor(selection: Selection, after: MessageId): Uint8Array | undefined {
    if (this.last <= after) return undefined
    if (this.first <= after) {
      return join(
        this.deliveries.filter((delivery) => delivery.id > after && selection.includes(delivery.channel)).map((
          delivery
        ) => delivery.frame)
      )
    }
    if (!this.joined.has(selection.key)) {
      this.joined.set(
        selection.key,
        join(this.deliveries.filter((delivery) => selection.includes(delivery.channel)).map((delivery) => delivery.frame))
      )
    }
    return this.joined.get(selection.key)
  }
}

const heartbeatFrame = encoder.encode(Sse.comment("heartbeat"))
const heartbeat = { _tag: "Heartbeat" } as const
type Item = Batch | typeof heartbeat

export interface Subscription {
  /** Where this node's published messages stood when the subscription began. */
  readonly position: MessageId
  /** The frames of every message the selection wants after max(`after`, `position`), then on. */
  readonly frames: Stream.Stream<Uint8Array>
}

export interface SubscribeOptions {
  readonly selection: Selection
  /** The client has everything up to here; only later messages are sent. */
  readonly after: Option.Option<MessageId>
  /** Cuts the client off; called once if its backlog outgrows the buffer. */
  readonly onOverflow: Effect.Effect<void>
}

interface Subscriber {
  consumedThrough: number
  cutOff: boolean
  readonly onOverflow: Effect.Effect<void>
}

export class Broadcast extends Context.Tag("pollcast/Broadcast")<Broadcast, {
  /** Sends the messages to every subscriber; they must follow what was published before. */
  readonly publish: (messages: NonEmptyReadonlyArray<Message>) => Effect.Effect<void>
  readonly subscribe: (options: SubscribeOptions) => Effect.Effect<Subscription, never, Scope.Scope>
  /** The id of the last message published (or where publishing starts). */
  readonly position: Effect.Effect<MessageId>
  readonly subscribers: Effect.Effect<number>
}>() {}

export const make = (start: MessageId) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<Item>(), PubSub.shutdown)
    const position = yield* Ref.make(start)
    const subscribers = new Set<Subscriber>()
    let published = 0

    const cutOffLaggards = Effect.forEach(
      subscribers,
      (subscriber) => {
        const behind = published - subscriber.consumedThrough
        if (subscriber.cutOff || behind <= config.clientBuffer) return Effect.void
        subscriber.cutOff = true
        return Effect.logWarning(`Disconnecting a client ${behind} messages behind (CLIENT_BUFFER is ${config.clientBuffer})`)
          .pipe(Effect.zipRight(subscriber.onOverflow))
      },
      { discard: true }
    )

    yield* PubSub.publish(pubsub, heartbeat).pipe(
      Effect.delay(config.heartbeatInterval),
      Effect.forever,
      Effect.forkScoped
    )

    return Broadcast.of({
      publish: (messages) =>
        // Laggards are judged on what was published before this batch, so a batch larger than the
        // buffer does not cut off clients that are keeping up.
        Effect.zipRight(
          cutOffLaggards,
          Effect.suspend(() => {
            published += messages.length
            const batch = new Batch(
              messages.map((message) => ({ id: message.id, channel: message.channel, frame: messageFrame(message) })) as [
                Delivery,
                ...Array<Delivery>
              ],
              published
            )
            // The position moves before the batch is offered: a subscriber that reads a position
            // not yet covering it is sure to receive it (see EventStream).
            return Ref.set(position, batch.last).pipe(Effect.zipRight(PubSub.publish(pubsub, batch)))
          })
        ),

      subscribe: ({ after, onOverflow, selection }) =>
        Effect.gen(function*() {
          const queue = yield* PubSub.subscribe(pubsub)
          const subscriber: Subscriber = { consumedThrough: published, cutOff: false, onOverflow }
          yield* Effect.acquireRelease(
            Effect.sync(() => subscribers.add(subscriber)),
            () => Effect.sync(() => subscribers.delete(subscriber))
          )
          const current = yield* Ref.get(position)
          const floor = Option.match(after, { onNone: () => current, onSome: (id) => maxId(id, current) })
          const frames = Stream.fromQueue(queue).pipe(
            Stream.mapChunks((items) => {
              const out: Array<Uint8Array> = []
              for (const item of items) {
                if (item._tag === "Heartbeat") {
                  out.push(heartbeatFrame)
                  continue
                }
                subscriber.consumedThrough = item.publishedThrough
                const frame = item.framesFor(selection, floor)
                if (frame !== undefined) out.push(frame)
              }
              return Chunk.unsafeFromArray(out)
            })
          )
          return { position: current, frames }
        }),

      position: Ref.get(position),
      subscribers: Effect.sync(() => subscribers.size)
    })
  })

export const layer = (start: MessageId) => Layer.scoped(Broadcast, make(start))
