import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Option, Scope, Stream, TestClock } from "effect"
import * as Broadcast from "../../src/Broadcast.js"
import { beginning, type Channel, Message, messageId } from "../../src/Message.js"
import { parser } from "../support/SseFrames.js"
import { testConfig } from "../support/TestConfig.js"

let sequence = 0
const message = (channel: string, body = `body ${sequence + 1}`) => {
  sequence++
  return new Message({
    id: messageId(BigInt(5000 + sequence), BigInt(sequence)),
    channel: channel as Channel,
    author: "test",
    body,
    createdAt: new Date(0)
  })
}

const broadcastLayer = (settings: Record<string, string> = {}) =>
  Broadcast.layer(beginning).pipe(Layer.provide(testConfig({ HEARTBEAT_INTERVAL: "1 hour", ...settings })))

const subscribe = (options: { channels?: ReadonlyArray<Channel>; onOverflow?: Effect.Effect<void> } = {}) =>
  Effect.gen(function*() {
    const broadcast = yield* Broadcast.Broadcast
    return yield* broadcast.subscribe({
      selection: Broadcast.Selection.of(
        options.channels === undefined ? "all" : [options.channels[0]!, ...options.channels.slice(1)]
      ),
      after: Option.none(),
      onOverflow: options.onOverflow ?? Effect.void
    })
  })

/** Reads a subscription in a fiber, keeping every chunk it yields. */
const consume = (subscription: Broadcast.Subscription) =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    yield* subscription.frames.pipe(
      Stream.runForEach((bytes) => Effect.sync(() => chunks.push(bytes))),
      Effect.forkScoped
    )
    return chunks
  })

const bodies = (chunks: ReadonlyArray<Uint8Array>) => {
  const parsed = parser()
  chunks.forEach(parsed.feed)
  return parsed.events.map((event) => JSON.parse(event.data).body as string)
}

describe("Broadcast", () => {
  it.scoped("gives every subscriber the same bytes for each batch, encoded once", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const readers = yield* Effect.forEach([1, 2, 3], () => Effect.flatMap(subscribe(), consume))
      yield* broadcast.publish([message("a", "x"), message("b", "y")])
      yield* broadcast.publish([message("a", "z")])
      yield* TestClock.adjust("1 millis")
      for (const chunks of readers) {
        expect(bodies(chunks)).toEqual(["x", "y", "z"])
        expect(chunks).toHaveLength(2)
        // The very same buffers: framed and joined once, shared by all.
        expect(chunks[0]).toBe(readers[0]![0])
        expect(chunks[1]).toBe(readers[0]![1])
      }
    }).pipe(Effect.provide(broadcastLayer())))

  it.scoped("sends a subscriber only the channels it follows, in publication order", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const both = yield* Effect.flatMap(subscribe({ channels: ["b" as Channel, "a" as Channel] }), consume)
      const onlyC = yield* Effect.flatMap(subscribe({ channels: ["c" as Channel] }), consume)
      yield* broadcast.publish([message("a", "a1"), message("c", "c1"), message("b", "b1")])
      yield* broadcast.publish([message("c", "c2")])
      yield* TestClock.adjust("1 millis")
      expect(bodies(both)).toEqual(["a1", "b1"])
      expect(bodies(onlyC)).toEqual(["c1", "c2"])
    }).pipe(Effect.provide(broadcastLayer())))

  it.scoped("cuts off a subscriber that falls more than CLIENT_BUFFER behind, and only that one", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const cutOff = yield* Deferred.make<void>()
      // Subscribed but never read, as when a client stops reading its socket.
      yield* subscribe({ onOverflow: Deferred.succeed(cutOff, undefined) })
      const healthyCutOff = yield* Deferred.make<void>()
      const healthy = yield* Effect.flatMap(subscribe({ onOverflow: Deferred.succeed(healthyCutOff, undefined) }), consume)

      for (let batch = 0; batch < 2; batch++) {
        yield* broadcast.publish([message("a"), message("a"), message("a")])
        yield* TestClock.adjust("1 millis")
      }
      // 6 behind is over the buffer of 5, but it is checked before each publication.
      expect(yield* Deferred.isDone(cutOff)).toBe(false)
      yield* broadcast.publish([message("a")])
      yield* TestClock.adjust("1 millis")
      expect(yield* Deferred.isDone(cutOff)).toBe(true)
      expect(yield* Deferred.isDone(healthyCutOff)).toBe(false)
      expect(bodies(healthy)).toHaveLength(7)
    }).pipe(Effect.provide(broadcastLayer({ CLIENT_BUFFER: "5" }))))

  it.scoped("forgets a subscriber as soon as its scope closes", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const scopes = yield* Effect.forEach([1, 2, 3], () => Scope.make())
      for (const scope of scopes) yield* subscribe().pipe(Scope.extend(scope))
      expect(yield* broadcast.subscribers).toBe(3)
      for (const scope of scopes) yield* Scope.close(scope, Exit.void)
      expect(yield* broadcast.subscribers).toBe(0)
    }).pipe(Effect.provide(broadcastLayer())))

  it.scoped("starts a subscription after the later of the client's id and the position", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const early = [message("a", "1"), message("a", "2")]
      yield* broadcast.publish([early[0]!, early[1]!])
      const batch = [message("a", "3"), message("a", "4"), message("a", "5")] as const
      const ahead = yield* broadcast.subscribe({
        selection: Broadcast.Selection.of("all"),
        after: Option.some(batch[1].id),
        onOverflow: Effect.void
      }).pipe(Effect.flatMap(consume))
      const behind = yield* broadcast.subscribe({
        selection: Broadcast.Selection.of("all"),
        after: Option.some(early[0]!.id),
        onOverflow: Effect.void
      }).pipe(Effect.flatMap(consume))
      yield* broadcast.publish(batch)
      yield* TestClock.adjust("1 millis")
      expect(bodies(ahead)).toEqual(["5"])
      expect(bodies(behind)).toEqual(["3", "4", "5"])
    }).pipe(Effect.provide(broadcastLayer())))
})
