import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope, TestClock } from "effect"
import * as Broadcast from "../../src/Delivery/Broadcast.js"
import { Selection } from "../../src/Domain/Channels.js"
import { beginning, type Channel, Message, type MessageId, messageId } from "../../src/Domain/Message.js"
import { testConfig } from "../support/TestConfig.js"
import * as TestSink from "../support/TestSink.js"

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

const subscribe = (
  options: { channels?: readonly [Channel, ...Array<Channel>]; after?: MessageId; reads?: boolean } = {}
) =>
  Effect.gen(function*() {
    const broadcast = yield* Broadcast.Broadcast
    const sink = TestSink.make({ reads: options.reads ?? true })
    const position = yield* broadcast.subscribe({
      selection: Selection.of(options.channels ?? "all"),
      after: Option.fromNullable(options.after),
      sink
    })
    return { sink, position }
  })

const bodies = (sink: TestSink.TestSink) => sink.parsed.events.map((event) => JSON.parse(event.data).body as string)

/** Lets the fan-out fiber take what was published. */
const fannedOut = TestClock.adjust("1 millis")

describe("Broadcast", () => {
  it.scoped("gives every subscriber the same bytes for each batch, encoded once", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const sinks = yield* Effect.forEach([1, 2, 3], () => Effect.map(subscribe(), ({ sink }) => sink))
      yield* broadcast.publish([message("a", "x"), message("b", "y")])
      yield* broadcast.publish([message("a", "z")])
      yield* fannedOut
      for (const sink of sinks) {
        expect(bodies(sink)).toEqual(["x", "y", "z"])
        expect(sink.chunks).toHaveLength(2)
        // The very same buffers: framed and joined once, shared by all.
        expect(sink.chunks[0]).toBe(sinks[0]!.chunks[0])
        expect(sink.chunks[1]).toBe(sinks[0]!.chunks[1])
      }
    }).pipe(Effect.provide(broadcastLayer())))

  it.scoped("writes a subscriber only the channels it follows, in publication order", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const both = (yield* subscribe({ channels: ["b" as Channel, "a" as Channel] })).sink
      const onlyC = (yield* subscribe({ channels: ["c" as Channel] })).sink
      yield* broadcast.publish([message("a", "a1"), message("c", "c1"), message("b", "b1")])
      yield* broadcast.publish([message("c", "c2")])
      yield* fannedOut
      expect(bodies(both)).toEqual(["a1", "b1"])
      expect(bodies(onlyC)).toEqual(["c1", "c2"])
    }).pipe(Effect.provide(broadcastLayer())))

  it.scoped("cuts off a subscriber with more than CLIENT_BUFFER_BYTES unread, and only that one", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      // Subscribed but never reading, as when a client stops reading its socket.
      const stalled = (yield* subscribe({ reads: false })).sink
      const healthy = (yield* subscribe()).sink
      // Four messages of a fixed size: just under 1 KiB a batch.
      const batch = () => [message("a", "four"), message("a", "four"), message("a", "four"), message("a", "four")] as const
      yield* broadcast.publish(batch())
      yield* fannedOut
      const batchBytes = stalled.backlog()
      expect(batchBytes).toBeGreaterThan(2048 / 3)
      expect(batchBytes).toBeLessThanOrEqual(1024)
      // The buffer holds two batches and a bit, besides the latest one: a fourth fills it past
      // the limit, and the fifth finds it over and cuts it off instead of writing more.
      for (let i = 0; i < 3; i++) {
        yield* broadcast.publish(batch())
        yield* fannedOut
      }
      expect(stalled.wasCutOff()).toBe(false)
      yield* broadcast.publish(batch())
      yield* fannedOut
      expect(stalled.wasCutOff()).toBe(true)
      // Nothing was written past the limit.
      expect(stalled.chunks).toHaveLength(4)
      expect(yield* broadcast.subscribers).toBe(1)
      expect(healthy.wasCutOff()).toBe(false)
      expect(bodies(healthy)).toHaveLength(20)
    }).pipe(Effect.provide(broadcastLayer({ CLIENT_BUFFER_BYTES: "2048" }))))

  it.scoped("cuts off a subscriber that takes nothing of its backlog for CLIENT_STALL_TIMEOUT, not a slow reader", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const stalled = (yield* subscribe({ reads: false })).sink
      const idle = (yield* subscribe()).sink
      // Always behind, but taking a little more every time it is looked at.
      let taken = 0
      const slow = { ...TestSink.make(), backlog: () => 100, flushed: () => ++taken }
      yield* broadcast.subscribe({ selection: Selection.of("all"), after: Option.none(), sink: slow })
      yield* broadcast.publish([message("a", "unread")])
      yield* fannedOut
      // Heartbeats every second look at every client; the stalled one is let go after 5 seconds.
      yield* TestClock.adjust("4 seconds")
      expect(stalled.wasCutOff()).toBe(false)
      yield* TestClock.adjust("2 seconds")
      expect(stalled.wasCutOff()).toBe(true)
      expect(slow.wasCutOff()).toBe(false)
      expect(idle.wasCutOff()).toBe(false)
      expect(yield* broadcast.subscribers).toBe(2)
    }).pipe(Effect.provide(broadcastLayer({ HEARTBEAT_INTERVAL: "1 second", CLIENT_STALL_TIMEOUT: "5 seconds" }))))

  it.scoped("forgets a subscriber as soon as its scope closes", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const scopes = yield* Effect.forEach([1, 2, 3], () => Scope.make())
      const sinks = yield* Effect.forEach(scopes, (scope) => subscribe().pipe(Scope.extend(scope)))
      expect(yield* broadcast.subscribers).toBe(3)
      yield* Scope.close(scopes[0]!, Exit.void)
      yield* broadcast.publish([message("a", "after one left")])
      yield* fannedOut
      expect(bodies(sinks[0]!.sink)).toEqual([])
      expect(bodies(sinks[1]!.sink)).toEqual(["after one left"])
      for (const scope of scopes.slice(1)) yield* Scope.close(scope, Exit.void)
      expect(yield* broadcast.subscribers).toBe(0)
    }).pipe(Effect.provide(broadcastLayer())))

  it.scoped("returns the position fanned out, and writes only what follows the later of it and the client's id", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const early = [message("a", "1"), message("a", "2")] as const
      yield* broadcast.publish(early)
      yield* fannedOut
      const batch = [message("a", "3"), message("a", "4"), message("a", "5")] as const
      const ahead = yield* subscribe({ after: batch[1].id })
      const behind = yield* subscribe({ after: early[0].id })
      expect(ahead.position).toBe(early[1].id)
      expect(behind.position).toBe(early[1].id)
      yield* broadcast.publish(batch)
      yield* fannedOut
      expect(bodies(ahead.sink)).toEqual(["5"])
      expect(bodies(behind.sink)).toEqual(["3", "4", "5"])
      expect(yield* broadcast.position).toBe(batch[2].id)
    }).pipe(Effect.provide(broadcastLayer())))

  it.scoped("ends every stream on close, and any that subscribes afterwards", () =>
    Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const before = (yield* subscribe()).sink
      yield* broadcast.close
      const after = (yield* subscribe()).sink
      expect(before.hasEnded()).toBe(true)
      expect(after.hasEnded()).toBe(true)
      expect(yield* broadcast.subscribers).toBe(0)
    }).pipe(Effect.provide(broadcastLayer())))
})
