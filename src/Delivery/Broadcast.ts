/**
 * Fan-out of polled messages to every connected client of this node.
 *
 * The poller publishes each batch into a PubSub; one fan-out fiber takes batches from it and
 * hands them to every client's sink, synchronously. Each message's SSE frame is encoded once, when
 * a client first wants it; each batch then joins the frames a given channel selection wants once, and
 * every client with that selection gets the very same bytes. (A PubSub subscription and fiber per
 * client would wake thousands of fibers per batch: measured at 30–40 µs per client per batch,
 * against well under 1 µs for a plain write, see the benchmarks in the README.)
 *
 * A client's backlog is bounded: one with more than CLIENT_BUFFER_BYTES waiting, besides the
 * latest batch (which a client keeping up may still be reading), is cut off, and so is one that has
 * taken nothing of its backlog for CLIENT_STALL_TIMEOUT. Its EventSource reconnects with
 * Last-Event-ID and loses nothing, and it cannot hold the others back or make the node hoard
 * messages for it.
 *
 * Its metrics are updated once per batch, never per client: the loop only adds up the bytes it
 * writes in a local number.
 */
import { Clock, Context, Deferred, Duration, Effect, Exit, FiberId, Layer, MetricBoundaries, MetricLabel, Option, PubSub, Scope, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import { AppConfig } from "../Config.js"
import { type Channel, encodeMessage, type Message, type MessageId, maxId } from "../Domain/Message.js"
import { idAfter, type Snapshot, txidOf } from "../Domain/Snapshot.js"
import * as Sse from "./Sse.js"
import { Selection } from "../Domain/Channels.js"
import { counter, histogram } from "../Metrics.js"

/** The SSE frame of one message. */
export const messageFrame = (message: Message): Uint8Array =>
  Sse.messageFrame(message.id, JSON.stringify(encodeMessage(message)))

/**
 * The frame of a message for a client that resumed from a snapshot: left out if the snapshot saw
 * it, else with the snapshot after its id while that still matters (see Snapshot).
 */
const frameAfterSnapshot = (id: MessageId, data: () => string, snapshot: Snapshot): Uint8Array | undefined =>
  snapshot.sees(txidOf(id)) ? undefined : Sse.messageFrame(idAfter(id, snapshot), data())

/** A stored message's frame for a client, from a snapshot or not (see frameAfterSnapshot). */
export const messageFrameAfter = (message: Message, snapshot: Snapshot | undefined): Uint8Array | undefined =>
  snapshot === undefined
    ? messageFrame(message)
    : frameAfterSnapshot(message.id, () => JSON.stringify(encodeMessage(message)), snapshot)

const join = (frames: ReadonlyArray<Uint8Array>): Uint8Array | undefined =>
  frames.length === 0 ? undefined : frames.length === 1 ? frames[0] : Buffer.concat(frames)

/**
 * One message of a batch, encoded once, when a client first wants it: a node reads every message
 * written, whatever its clients follow, and encoding those nobody here follows is work thrown away
 * (CPU that a database server sharing the machine would have used for its writers). A worker
 * process gets its frames already encoded by the node's primary (see EncodedBatch).
 */
class Delivery {
  private json: string | undefined
  private encoded: Uint8Array | undefined

  constructor(
    readonly id: MessageId,
    readonly channel: Channel,
    private readonly message: Message | undefined,
    frame?: Uint8Array
  ) {
    this.encoded = frame
  }

  static of(message: Message): Delivery {
    return new Delivery(message.id, message.channel, message)
  }

  /** The message as JSON, for a frame with another id (see framesAfterSnapshot). */
  get data(): string {
    return this.json ??= this.message === undefined
      ? Sse.messageData(this.encoded!)
      : JSON.stringify(encodeMessage(this.message))
  }

  get frame(): Uint8Array {
    return this.encoded ??= Sse.messageFrame(this.id, this.data)
  }
}

/**
 * A batch as one process hands it to another: every message's frame, encoded once, in one buffer
 * (`ends[i]` is where the i-th frame ends), with what a fan-out selects them by. Plain data, for
 * structured cloning over IPC.
 */
export interface EncodedBatch {
  readonly ids: ReadonlyArray<MessageId>
  readonly channels: ReadonlyArray<Channel>
  readonly frames: Uint8Array
  readonly ends: ReadonlyArray<number>
  readonly oldestCreatedAt: number
}

/** Encodes `messages` once, for every worker of the node (see Batch.decode). */
export const encodeBatch = (messages: NonEmptyReadonlyArray<Message>): EncodedBatch => {
  const frames = messages.map(messageFrame)
  const ends: Array<number> = []
  let end = 0
  for (const frame of frames) ends.push(end += frame.length)
  return {
    ids: messages.map((message) => message.id),
    channels: messages.map((message) => message.channel),
    frames: Buffer.concat(frames),
    ends,
    oldestCreatedAt: oldestOf(messages)
  }
}

const oldestOf = (messages: NonEmptyReadonlyArray<Message>) => {
  let oldest = messages[0].createdAt.getTime()
  for (const message of messages) oldest = Math.min(oldest, message.createdAt.getTime())
  return oldest
}

/** Seconds from 1 ms to about 65 s, doubling. */
const secondsBoundaries = MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 17 })

export const fanOutDuration = histogram("pollcast_fanout_duration_seconds", "Time to hand one batch (or heartbeat) to every client of the node", MetricBoundaries.exponential({ start: 0.0001, factor: 2, count: 16 })).register()
export const deliveryLag = histogram("pollcast_delivery_lag_seconds", "At fan-out, now minus created_at of the oldest message of the batch (one observation per batch)", secondsBoundaries).register()
export const messagesFannedOut = counter("pollcast_fanout_messages_total", "Messages fanned out to this node's clients (each counted once, whatever the number of clients)").register()
export const bytesWritten = counter("pollcast_stream_bytes_written_total", "Bytes handed to event stream connections, by kind: live, replay, heartbeat, control")
// Constant label arrays: a metric finds its series by the array's identity (see Metric.fromMetricKey).
const liveBytes = [MetricLabel.make("kind", "live")]
const heartbeatBytes = [MetricLabel.make("kind", "heartbeat")]

/** One poll's messages, in delivery order, with their frames. */
export class Batch {
  readonly _tag = "Batch"
  readonly first: MessageId
  readonly last: MessageId
  private readonly joined = new Map<string, Uint8Array | undefined>()
  /** Completed once every subscriber has been written the batch. */
  readonly fannedOut = Deferred.unsafeMake<void>(FiberId.none)

  constructor(
    readonly deliveries: NonEmptyReadonlyArray<Delivery>,
    /** When the oldest message was created (epoch milliseconds). */
    readonly oldestCreatedAt: number
  ) {
    this.first = deliveries[0].id
    this.last = deliveries[deliveries.length - 1]!.id
  }

  static of(messages: NonEmptyReadonlyArray<Message>): Batch {
    return new Batch(messages.map(Delivery.of) as [Delivery, ...Array<Delivery>], oldestOf(messages))
  }

  /** A batch encoded by another process: its frames are views of the one buffer, never copied. */
  static decode(encoded: EncodedBatch): Batch {
    const frames = Buffer.from(encoded.frames.buffer, encoded.frames.byteOffset, encoded.frames.byteLength)
    const deliveries = encoded.ids.map((id, i) =>
      new Delivery(id, encoded.channels[i]!, undefined, frames.subarray(i === 0 ? 0 : encoded.ends[i - 1], encoded.ends[i]))
    )
    return new Batch(deliveries as [Delivery, ...Array<Delivery>], encoded.oldestCreatedAt)
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

  /**
   * The same for a client that resumed from a snapshot: built for it alone, without what the
   * snapshot saw, each id followed by the snapshot while that matters (see Snapshot).
   */
  framesAfterSnapshot(selection: Selection, after: MessageId, snapshot: Snapshot): Uint8Array | undefined {
    return join(
      this.deliveries.flatMap((delivery) =>
        delivery.id > after && selection.includes(delivery.channel)
          ? frameAfterSnapshot(delivery.id, () => delivery.data, snapshot) ?? []
          : []
      )
    )
  }
}

const heartbeat = { _tag: "Heartbeat" } as const
type Item = Batch | typeof heartbeat

export type CutOffReason = "backlog" | "stalled"

/** Where a client's live frames go; called synchronously by the fan-out. */
export interface Sink {
  readonly write: (frames: Uint8Array) => void
  /** Bytes written but not yet taken by the client. */
  readonly backlog: () => number
  /** Bytes the client has taken so far: while it reads, this grows. */
  readonly flushed: () => number
  /** The client fell too far behind (`backlog`) or stopped reading (`stalled`): cut its connection. Called at most once. */
  readonly cutOff: (reason: CutOffReason) => void
  /** The node is shutting down: end the stream. */
  readonly end: () => void
}

export interface SubscribeOptions {
  readonly selection: Selection
  /** The client has everything up to here; only later messages are written. */
  readonly after: Option.Option<MessageId>
  /** And everything this snapshot saw (see Snapshot). */
  readonly snapshot?: Snapshot | undefined
  readonly sink: Sink
}

interface Subscriber {
  readonly selection: Selection
  readonly floor: MessageId
  /** Until a batch begins past what it may have seen. */
  snapshot: Snapshot | undefined
  readonly sink: Sink
  /** Bytes written by the latest fan-out, which a client keeping up may still be reading. */
  lastWrite: number
  /** `sink.flushed()` when last looked at, and when the client was last seen taking something. */
  lastFlushed: number
  lastProgressAt: number
}

export class Broadcast extends Context.Tag("pollcast/Broadcast")<Broadcast, {
  /**
   * Hands the messages to every subscriber, and completes once they have been written to all of
   * them (so that the poller's pace follows the fan-out's cost); they must follow what was
   * published before.
   */
  readonly publish: (messages: NonEmptyReadonlyArray<Message>) => Effect.Effect<void>
  /** The same for a batch made already (one a worker got from its primary). */
  readonly publishBatch: (batch: Batch) => Effect.Effect<void>
  /**
   * Registers a sink until the scope closes, and returns the position fanned out so far: every
   * later batch is written to the sink (from after max(`after`, position)), every earlier one is
   * at or before the position.
   */
  readonly subscribe: (options: SubscribeOptions) => Effect.Effect<MessageId, never, Scope.Scope>
  /** The id of the last message fanned out (or where fanning out starts). */
  readonly position: Effect.Effect<MessageId>
  readonly subscribers: Effect.Effect<number>
  /** Ends every subscriber's stream, and any subscribed later: for shutdown. */
  readonly close: Effect.Effect<void>
}>() {}

/** Batches (and heartbeats) published but not yet fanned out, at most. */
const pendingBatches = 16

export const make = (start: MessageId) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    // Bounded: when the fan-out falls behind, the poller waits for it (and its next poll carries
    // more) instead of batches piling up in memory.
    const pubsub = yield* Effect.acquireRelease(PubSub.bounded<Item>(pendingBatches), PubSub.shutdown)
    const subscribers = new Set<Subscriber>()
    const stallTimeout = Duration.toMillis(config.clientStallTimeout)
    let position = start
    let closed = false

    /** Whether a subscriber has taken nothing of a waiting backlog for CLIENT_STALL_TIMEOUT. */
    const stalled = (subscriber: Subscriber, backlog: number, now: number) => {
      if (backlog > 0) {
        const flushed = subscriber.sink.flushed()
        if (flushed === subscriber.lastFlushed) return now - subscriber.lastProgressAt >= stallTimeout
        subscriber.lastFlushed = flushed
      }
      subscriber.lastProgressAt = now
      return false
    }

    // Runs with nothing else in between: a subscriber registers either before a batch (and gets
    // it) or after it (and the position it reads covers it). Returns how many were cut off.
    const fanOut = (item: Item, now: number) => {
      const started = performance.now()
      let overflowing = 0
      let stalling = 0
      let written = 0
      for (const subscriber of subscribers) {
        const { floor, selection, sink } = subscriber
        const backlog = sink.backlog()
        const overflows = backlog > config.clientBufferBytes + subscriber.lastWrite
        if (overflows || stalled(subscriber, backlog, now)) {
          if (overflows) overflowing++
          else stalling++
          subscribers.delete(subscriber)
          sink.cutOff(overflows ? "backlog" : "stalled")
          continue
        }
        if (item._tag === "Heartbeat") {
          sink.write(Sse.heartbeatFrame)
          written += Sse.heartbeatFrame.length
          continue
        }
        if (subscriber.snapshot !== undefined && !subscriber.snapshot.mattersAt(txidOf(item.first))) {
          subscriber.snapshot = undefined
        }
        const frames = subscriber.snapshot === undefined
          ? item.framesFor(selection, floor)
          : item.framesAfterSnapshot(selection, floor, subscriber.snapshot)
        subscriber.lastWrite = frames?.length ?? 0
        if (frames !== undefined) {
          sink.write(frames)
          written += frames.length
        }
      }
      fanOutDuration.unsafeUpdate((performance.now() - started) / 1000, [])
      if (item._tag === "Batch") {
        position = item.last
        bytesWritten.unsafeUpdate(written, liveBytes)
        messagesFannedOut.unsafeUpdate(item.deliveries.length, [])
        deliveryLag.unsafeUpdate(Math.max(0, now - item.oldestCreatedAt) / 1000, [])
      } else {
        bytesWritten.unsafeUpdate(written, heartbeatBytes)
      }
      return { overflowing, stalling }
    }

    // Subscribed here, before anything can be published, so that nothing is missed.
    const batches = yield* PubSub.subscribe(pubsub)
    yield* Stream.fromQueue(batches).pipe(
      Stream.runForEach((item) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const { overflowing, stalling } = fanOut(item, now)
          if (item._tag === "Batch") Deferred.unsafeDone(item.fannedOut, Exit.void)
          return Effect.all([
            overflowing === 0 ? Effect.void : Effect.logWarning(
              `Disconnected ${overflowing} client(s) with more than ${config.clientBufferBytes} bytes waiting (CLIENT_BUFFER_BYTES)`
            ),
            stalling === 0 ? Effect.void : Effect.logWarning(
              `Disconnected ${stalling} client(s) that read nothing for ${
                Duration.format(config.clientStallTimeout)
              } (CLIENT_STALL_TIMEOUT)`
            )
          ], { discard: true })
        })
      ),
      Effect.forkScoped
    )

    yield* PubSub.publish(pubsub, heartbeat).pipe(
      Effect.delay(config.heartbeatInterval),
      Effect.forever,
      Effect.forkScoped
    )

    /**
     * A subscriber's finalizer, made apart from `subscribe` so that it keeps alive only the
     * subscriber (a closure keeps what the function that made it can see); its effect is made
     * when it runs, not kept for the stream's life.
     */
    const unsubscribe = (subscriber: Subscriber) => () => Effect.sync(() => subscribers.delete(subscriber))

    const publishBatch = (batch: Batch) => PubSub.publish(pubsub, batch).pipe(Effect.zipRight(Deferred.await(batch.fannedOut)))

    return Broadcast.of({
      publish: (messages) => Effect.suspend(() => publishBatch(Batch.of(messages))),
      publishBatch,

      // A finalizer rather than acquireRelease: the latter keeps a copy of the fiber's references
      // for its finalizer, about 1 KB for every connected client (and see `unsubscribe`).
      subscribe: ({ after, selection, sink, snapshot }) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.scopeWith((scope) => {
          const floor = Option.match(after, { onNone: () => position, onSome: (id) => maxId(id, position) })
          const subscriber: Subscriber = {
            selection,
            floor,
            snapshot,
            sink,
            lastWrite: 0,
            lastFlushed: sink.flushed(),
            lastProgressAt: now
          }
          if (closed) sink.end()
          else subscribers.add(subscriber)
          return Effect.as(Scope.addFinalizerExit(scope, unsubscribe(subscriber)), position)
        })),

      position: Effect.sync(() => position),
      subscribers: Effect.sync(() => subscribers.size),
      close: Effect.sync(() => {
        closed = true
        for (const { sink } of subscribers) sink.end()
        subscribers.clear()
      })
    })
  })

export const layer = (start: MessageId) => Layer.scoped(Broadcast, make(start))
