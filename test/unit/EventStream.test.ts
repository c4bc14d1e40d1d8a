import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Random, Scope } from "effect"
import * as Broadcast from "../../src/Delivery/Broadcast.js"
import type { Message, MessageId } from "../../src/Domain/Message.js"
import * as EventStream from "../../src/Delivery/EventStream.js"
import * as InMemoryRepo from "../support/InMemoryRepo.js"
import { parser } from "../support/SseFrames.js"
import { testConfig } from "../support/TestConfig.js"

/** An EventStream over a repo and a Broadcast that the test publishes to by hand. */
const eventStreamOn = (repo: InMemoryRepo.InMemoryRepo, start: MessageId) =>
  EventStream.layer.pipe(
    Layer.provideMerge(Broadcast.layer(start)),
    Layer.provide(repo.layer),
    Layer.provide(testConfig({ HEARTBEAT_INTERVAL: "1 hour", SSE_RETRY: "1500 millis" }))
  )

/** Gives the fan-out fiber time to take what was published (real time, briefly). */
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))

/** Opens a stream in its own scope, on a connection that records what it is sent. */
const open = (lastEventId: Option.Option<MessageId>, channels: "all" | readonly [string, ...Array<string>] = "all") =>
  Effect.gen(function*() {
    const eventStream = yield* EventStream.EventStream
    const scope = yield* Scope.make()
    const received = parser()
    let ended = false
    const connection: EventStream.ClientConnection = {
      write: (bytes) => {
        if (ended) throw new Error("written after the end")
        received.feed(bytes)
        return true
      },
      queued: () => 0,
      flushed: () => 0,
      drained: Effect.void,
      end: () => {
        ended = true
      },
      destroy: () => {
        ended = true
      }
    }
    yield* Effect.forkDaemon(
      eventStream.open({
        channels: channels as never,
        lastEventId: Option.map(lastEventId, (after) => ({ after, snapshot: undefined })),
        connection,
        expiresAt: undefined
      }).pipe(Scope.extend(scope))
    )
    return { received, ended: () => ended, close: Scope.close(scope, Exit.void) }
  })

const idsOf = (messages: ReadonlyArray<Message>) => messages.map((message) => message.id)

describe("EventStream", () => {
  it.scoped("starts with the retry field, then sends only what is published after connecting", () => {
    const repo = InMemoryRepo.make()
    const old = repo.add("a", "old")
    return Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const client = yield* open(Option.none())
      yield* settle
      const fresh = repo.add("a", "fresh")
      yield* broadcast.publish([fresh])
      yield* settle
      expect(client.received.retries).toEqual([1500])
      expect(client.received.ids()).toEqual([fresh.id])
      expect(client.received.events[0]).toMatchObject({ event: "message", id: fresh.id })
    }).pipe(Effect.provide(eventStreamOn(repo, old.id)))
  })

  it.scoped("replays what a resuming client missed from the repo, then continues live, each message once", () => {
    const repo = InMemoryRepo.make()
    for (let i = 1; i <= 1200; i++) repo.add(i % 3 === 0 ? "b" : "a", `m${i}`)
    const published = repo.messages[repo.messages.length - 1]!
    return Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      const resumeFrom = repo.messages[99]!
      const all = yield* open(Option.some(resumeFrom.id))
      const onlyB = yield* open(Option.some(resumeFrom.id), ["b"])
      yield* settle
      const live = [repo.add("a", "live 1"), repo.add("b", "live 2")] as const
      yield* broadcast.publish(live)
      yield* settle
      const expected = repo.messages.slice(100)
      expect(all.received.ids()).toEqual(idsOf(expected))
      expect(onlyB.received.ids()).toEqual(idsOf(expected.filter((message) => message.channel === "b")))
    }).pipe(Effect.provide(eventStreamOn(repo, published.id)))
  })

  it.scoped("hands over from replay to live without gap or duplicate while publication goes on", () => {
    const repo = InMemoryRepo.make()
    const first = repo.add("a", "m0")
    return Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      // One publisher, as the poller: each message is final in the repo before it is published.
      const publisher = yield* Effect.forkScoped(Effect.forEach(Array.from({ length: 300 }, (_, i) => i + 1), (i) =>
        Effect.gen(function*() {
          const message = repo.add("a", `m${i}`)
          yield* broadcast.publish([message])
          if (yield* Random.nextBoolean) yield* Effect.yieldNow()
        })))
      // Clients resume from random points while that runs.
      const clients: Array<{ readonly from: MessageId; readonly received: ReturnType<typeof parser> }> = []
      for (let c = 0; c < 40; c++) {
        const known = repo.messages
        const from = known[yield* Random.nextIntBetween(0, known.length)]!.id
        clients.push({ from, received: (yield* open(Option.some(from))).received })
        yield* Effect.yieldNow()
      }
      yield* Fiber.join(publisher)
      yield* settle
      for (const client of clients) {
        expect(client.received.ids()).toEqual(idsOf(repo.messages.filter((message) => message.id > client.from)))
      }
    }).pipe(Effect.provide(eventStreamOn(repo, first.id)))
  })

  it.scoped("gives a client that is ahead of this node's poller nothing it already has", () => {
    const repo = InMemoryRepo.make()
    const seen = [repo.add("a", "1"), repo.add("a", "2"), repo.add("a", "3")] as const
    return Effect.gen(function*() {
      const broadcast = yield* Broadcast.Broadcast
      // The client saw message 3 on a node whose poller was ahead of this one.
      const client = yield* open(Option.some(seen[2].id))
      yield* settle
      yield* broadcast.publish([seen[1], seen[2]])
      const next = repo.add("a", "4")
      yield* broadcast.publish([next])
      yield* settle
      expect(client.received.ids()).toEqual([next.id])
    }).pipe(Effect.provide(eventStreamOn(repo, seen[0].id)))
  })

  it.scoped("counts open streams, and ends them all when draining", () => {
    const repo = InMemoryRepo.make()
    const first = repo.add("a", "1")
    return Effect.gen(function*() {
      const eventStream = yield* EventStream.EventStream
      const clients = yield* Effect.all([open(Option.none()), open(Option.none()), open(Option.some(first.id))])
      yield* settle
      expect(yield* eventStream.connections).toBe(3)
      yield* eventStream.drain
      yield* settle
      for (const client of clients) expect(client.ended()).toBe(true)
      // A stream opened while draining ends at once.
      const late = yield* open(Option.none())
      yield* settle
      expect(late.ended()).toBe(true)
      for (const client of [...clients, late]) yield* client.close
      expect(yield* eventStream.connections).toBe(0)
    }).pipe(Effect.provide(eventStreamOn(repo, first.id)))
  })
})
