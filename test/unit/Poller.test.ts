import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Ref, Stream, TestClock } from "effect"
import { Broadcast } from "../../src/Delivery/Broadcast.js"
import { Selection } from "../../src/Domain/Channels.js"
import { beginning } from "../../src/Domain/Message.js"
import * as Poller from "../../src/Delivery/Poller.js"
import * as InMemoryRepo from "../support/InMemoryRepo.js"
import * as InMemoryWakeups from "../support/InMemoryWakeups.js"
import { testConfig } from "../support/TestConfig.js"
import * as TestSink from "../support/TestSink.js"

const pollerOn = (
  repo: InMemoryRepo.InMemoryRepo,
  settings: Record<string, string> = {},
  wakeups: InMemoryWakeups.InMemoryWakeups = InMemoryWakeups.make()
) =>
  Poller.layer.pipe(
    Layer.provide(Layer.merge(repo.layer, wakeups.layer)),
    // No probe unless a test turns it on: these count the polls the interval and notifications make.
    Layer.provide(
      testConfig({ POLL_INTERVAL: "1 second", HEARTBEAT_INTERVAL: "1 hour", WAKEUP_PROBE_INTERVAL: "0 millis", ...settings })
    )
  )

const bodies = (events: ReadonlyArray<{ readonly data: string }>) => events.map((event) => JSON.parse(event.data).body)

/** Lets the poller start (and subscribe to wake-ups) before a test notifies it. */
const started = TestClock.adjust("10 millis")

/** Inserts `count` messages on channel "c" (m1, m2, …), each announced by a notification, `every` apart. */
const insertAnnounced = (
  repo: InMemoryRepo.InMemoryRepo,
  wakeups: InMemoryWakeups.InMemoryWakeups,
  count: number,
  every: Duration.DurationInput
) =>
  Effect.forEach(Array.from({ length: count }, (_, i) => i + 1), (i) => {
    repo.add("c", `m${i}`)
    wakeups.notify()
    return TestClock.adjust(every)
  }, { discard: true })

/** Subscribes to every channel and records the events received. */
const follow = Effect.gen(function*() {
  const broadcast = yield* Broadcast
  const sink = TestSink.make()
  yield* broadcast.subscribe({ selection: Selection.of("all"), after: Option.none(), sink })
  return sink.parsed
})

describe("Poller", () => {
  it.scoped("polls once per interval, however many clients are subscribed", () => {
    const repo = InMemoryRepo.make()
    return Effect.gen(function*() {
      const clients = yield* Effect.all(Array.from({ length: 100 }, () => follow))
      yield* TestClock.adjust("10 seconds")
      expect(repo.polls()).toBe(10)

      repo.add("a", "one")
      repo.add("b", "two")
      yield* TestClock.adjust("1 second")
      expect(repo.polls()).toBe(11)
      for (const client of clients) {
        expect(client.events.map((event) => JSON.parse(event.data).body)).toEqual(["one", "two"])
      }
    }).pipe(Effect.provide(pollerOn(repo)))
  })

  it.scoped("never runs two polls at once, even when a poll outlasts the interval", () => {
    const repo = InMemoryRepo.make()
    repo.setPollDuration("2500 millis")
    return Effect.gen(function*() {
      yield* follow
      yield* TestClock.adjust("30 seconds")
      expect(repo.maxConcurrentPolls()).toBe(1)
      // Schedule.fixed: a late poll is followed by the next at once, without piling up.
      expect(repo.polls()).toBeGreaterThanOrEqual(11)
      expect(repo.polls()).toBeLessThanOrEqual(12)
    }).pipe(Effect.provide(pollerOn(repo)))
  })

  it.scoped("polls again at once while batches come back full", () => {
    const repo = InMemoryRepo.make()
    return Effect.gen(function*() {
      const client = yield* follow
      for (let i = 1; i <= 35; i++) repo.add("c", `m${i}`)
      yield* TestClock.adjust("1 second")
      // 10 + 10 + 10 + 5: four queries within one tick.
      expect(repo.polls()).toBe(4)
      expect(client.events.map((event) => JSON.parse(event.data).body)).toEqual(
        Array.from({ length: 35 }, (_, i) => `m${i + 1}`)
      )
    }).pipe(Effect.provide(pollerOn(repo, { POLL_BATCH_SIZE: "10" })))
  })

  it.scoped("retries a failing poll with backoff and then delivers what was written meanwhile, once", () => {
    const repo = InMemoryRepo.make()
    return Effect.gen(function*() {
      const poller = yield* Poller.Poller
      const client = yield* follow
      repo.add("c", "before")
      yield* TestClock.adjust("1 second")
      expect(client.events).toHaveLength(1)

      repo.setFailing(true)
      repo.add("c", "during 1")
      repo.add("c", "during 2")
      yield* TestClock.adjust("20 seconds")
      const failing = yield* poller.status
      expect(failing.consecutiveFailures).toBeGreaterThan(3)
      // Capped exponential backoff: far fewer attempts than one every 100 ms.
      expect(repo.polls()).toBeLessThan(20)
      expect(client.events).toHaveLength(1)

      repo.setFailing(false)
      yield* TestClock.adjust("6 seconds")
      expect((yield* poller.status).consecutiveFailures).toBe(0)
      expect(client.events.map((event) => JSON.parse(event.data).body)).toEqual(["before", "during 1", "during 2"])
    }).pipe(Effect.provide(pollerOn(repo)))
  })

  it.scoped("keeps polling after a defect, from where it was", () => {
    const repo = InMemoryRepo.make()
    return Effect.gen(function*() {
      const client = yield* follow
      repo.setDying(true)
      repo.add("c", "one")
      yield* TestClock.adjust("3 seconds")
      expect(client.events).toHaveLength(0)
      repo.setDying(false)
      repo.add("c", "two")
      yield* TestClock.adjust("3 seconds")
      expect(client.events.map((event) => JSON.parse(event.data).body)).toEqual(["one", "two"])
    }).pipe(Effect.provide(pollerOn(repo)))
  })

  it.scoped("sends each client a heartbeat comment every HEARTBEAT_INTERVAL", () => {
    const repo = InMemoryRepo.make()
    return Effect.gen(function*() {
      const broadcast = yield* Broadcast
      const sink = TestSink.make()
      yield* broadcast.subscribe({ selection: Selection.of("all"), after: Option.none(), sink })
      const chunks = () => sink.chunks.map((chunk) => new TextDecoder().decode(chunk))
      yield* TestClock.adjust("14 seconds")
      expect(chunks()).toEqual([])
      yield* TestClock.adjust("1 second")
      expect(chunks()).toEqual([": heartbeat\n\n"])
      yield* TestClock.adjust("15 seconds")
      expect(chunks()).toEqual([": heartbeat\n\n", ": heartbeat\n\n"])
    }).pipe(Effect.provide(pollerOn(repo, { HEARTBEAT_INTERVAL: "15 seconds" })))
  })

  describe("woken by notifications", () => {
    it.scoped("polls as soon as a notification arrives, without waiting for the interval", () => {
      const repo = InMemoryRepo.make()
      const wakeups = InMemoryWakeups.make()
      return Effect.gen(function*() {
        const client = yield* follow
        yield* started
        repo.add("c", "instant")
        wakeups.notify()
        yield* TestClock.adjust("1 millis")
        expect(repo.polls()).toBe(1)
        expect(bodies(client.events)).toEqual(["instant"])

        // And again, long after: each wake-up polls once; the interval still ticks as before.
        yield* TestClock.adjust("5 seconds")
        expect(repo.polls()).toBe(6)
        repo.add("c", "again")
        wakeups.notify()
        yield* TestClock.adjust("1 millis")
        expect(repo.polls()).toBe(7)
        expect(bodies(client.events)).toEqual(["instant", "again"])
      }).pipe(Effect.provide(pollerOn(repo, { POLL_INTERVAL: "1 second" }, wakeups)))
    })

    it.scoped("polls exactly once more for any number of notifications during a poll", () => {
      const repo = InMemoryRepo.make()
      const wakeups = InMemoryWakeups.make()
      repo.setPollDuration("500 millis")
      return Effect.gen(function*() {
        const client = yield* follow
        yield* started
        repo.add("c", "first")
        wakeups.notify()
        yield* TestClock.adjust("100 millis")
        expect(repo.polls()).toBe(1)
        repo.add("c", "second")
        for (let i = 0; i < 50; i++) wakeups.notify()
        // The next starts as soon as the first ends, and no other follows it.
        yield* TestClock.adjust("400 millis")
        expect(repo.polls()).toBe(2)
        yield* TestClock.adjust("5 seconds")
        expect(repo.polls()).toBe(2)
        expect(repo.maxConcurrentPolls()).toBe(1)
        expect(bodies(client.events)).toEqual(["first", "second"])
      }).pipe(Effect.provide(pollerOn(repo, { POLL_INTERVAL: "1 hour" }, wakeups)))
    })

    it.scoped("delivers at the next interval when notifications are lost", () => {
      const repo = InMemoryRepo.make()
      const wakeups = InMemoryWakeups.make()
      return Effect.gen(function*() {
        const client = yield* follow
        yield* started
        repo.add("c", "announced")
        wakeups.notify()
        yield* TestClock.adjust("100 millis")
        expect(bodies(client.events)).toEqual(["announced"])

        // The LISTEN connection is down: inserts go unannounced.
        wakeups.setState("reconnecting")
        repo.add("c", "unannounced")
        yield* TestClock.adjust("850 millis")
        expect(bodies(client.events)).toEqual(["announced"])
        yield* TestClock.adjust("50 millis")
        expect(bodies(client.events)).toEqual(["announced", "unannounced"])
      }).pipe(Effect.provide(pollerOn(repo, { POLL_INTERVAL: "1 second" }, wakeups)))
    })

    it.scoped("never runs two polls at once under a storm of notifications and interval ticks", () => {
      const repo = InMemoryRepo.make()
      const wakeups = InMemoryWakeups.make()
      repo.setPollDuration("35 millis")
      return Effect.gen(function*() {
        const client = yield* follow
        yield* started
        yield* insertAnnounced(repo, wakeups, 500, "3 millis")
        // Back to back, 35 ms each, over 1.5 seconds: not one poll per notification.
        expect(repo.polls()).toBeGreaterThanOrEqual(40)
        expect(repo.polls()).toBeLessThanOrEqual(44)
        yield* TestClock.adjust("1 second")
        expect(repo.maxConcurrentPolls()).toBe(1)
        expect(bodies(client.events)).toEqual(Array.from({ length: 500 }, (_, i) => `m${i + 1}`))
      }).pipe(Effect.provide(pollerOn(repo, { POLL_INTERVAL: "100 millis", WAKEUP_MIN_GAP: "0 millis" }, wakeups)))
    })

    it.scoped("starts polls at least WAKEUP_MIN_GAP apart, however often it is notified", () => {
      const repo = InMemoryRepo.make()
      const wakeups = InMemoryWakeups.make()
      return Effect.gen(function*() {
        const client = yield* follow
        yield* started
        yield* insertAnnounced(repo, wakeups, 1000, "1 millis")
        // 1,000 notifications over one second, a poll at most every 50 ms.
        expect(repo.polls()).toBeGreaterThanOrEqual(19)
        expect(repo.polls()).toBeLessThanOrEqual(21)
        yield* TestClock.adjust("50 millis")
        expect(bodies(client.events)).toHaveLength(1000)
      }).pipe(Effect.provide(pollerOn(repo, { POLL_INTERVAL: "10 seconds", WAKEUP_MIN_GAP: "50 millis" }, wakeups)))
    })

    it.scoped("a full batch after a notification is followed by the next poll at once", () => {
      const repo = InMemoryRepo.make()
      const wakeups = InMemoryWakeups.make()
      return Effect.gen(function*() {
        const client = yield* follow
        yield* started
        for (let i = 1; i <= 25; i++) repo.add("c", `m${i}`)
        wakeups.notify()
        yield* TestClock.adjust("1 millis")
        expect(repo.polls()).toBe(3)
        expect(bodies(client.events)).toHaveLength(25)
      }).pipe(Effect.provide(pollerOn(repo, { POLL_INTERVAL: "1 hour", POLL_BATCH_SIZE: "10", WAKEUP_MIN_GAP: "1 second" }, wakeups)))
    })

    it.scoped("paces woken polls so that fanning out takes at most FANOUT_SHARE of the time", () => {
      const repo = InMemoryRepo.make()
      const wakeups = InMemoryWakeups.make()
      let fanningOut = 0
      let delivered = 0
      // A fan-out that takes 40 ms, as writing to many clients does.
      const deliver = (messages: ReadonlyArray<unknown>) =>
        Effect.sleep("40 millis").pipe(Effect.zipRight(Effect.sync(() => {
          fanningOut += 40
          delivered += messages.length
          return Duration.millis(40)
        })))
      return Effect.gen(function*() {
        const status = yield* Ref.make<Poller.PollerStatus>({ lastSuccessAt: 0, consecutiveFailures: 0, polls: 0, probes: 0, position: beginning, restartNeeded: Option.none() })
        yield* Effect.forkScoped(Effect.scoped(Poller.run(status, deliver, Stream.never)))
        yield* started
        yield* insertAnnounced(repo, wakeups, 2000, "1 millis")
        // Each 40 ms fan-out is followed by 120 ms of rest: about a poll every 160 ms, each
        // carrying what came meanwhile (unpaced, one every 40 ms, a quarter as much each).
        expect(repo.polls()).toBeGreaterThanOrEqual(11)
        expect(repo.polls()).toBeLessThanOrEqual(14)
        expect(fanningOut / 2000).toBeLessThanOrEqual(0.3)
        yield* TestClock.adjust("1 second")
        expect(delivered).toBe(2000)
      }).pipe(
        Effect.provide(Layer.mergeAll(
          repo.layer,
          wakeups.layer,
          testConfig({ POLL_INTERVAL: "10 seconds", WAKEUP_MIN_GAP: "0 millis", FANOUT_SHARE: "0.25" })
        ))
      )
    })
  })

  describe("woken by the probe", () => {
    const probing = { WAKEUP_PROBE_INTERVAL: "50 millis", POLL_INTERVAL: "10 seconds" }

    it.scoped("polls within a probe interval of an insert nobody announced, and not for probes that see nothing", () => {
      const repo = InMemoryRepo.make()
      return Effect.gen(function*() {
        const client = yield* follow
        yield* TestClock.adjust("30 seconds")
        // The interval's three polls, and one for the first probe (nothing to compare it with).
        expect(repo.polls()).toBe(4)
        expect(repo.probes()).toBeGreaterThanOrEqual(590)

        repo.add("c", "unannounced")
        yield* TestClock.adjust("60 millis")
        expect(bodies(client.events)).toEqual(["unannounced"])
        expect(repo.polls()).toBe(5)
      }).pipe(Effect.provide(pollerOn(repo, probing)))
    })

    it.scoped("polls at once for this node's own commits", () => {
      const repo = InMemoryRepo.make()
      return Effect.gen(function*() {
        const client = yield* follow
        yield* started
        repo.add("c", "mine")
        repo.commit()
        yield* TestClock.adjust("1 millis")
        expect(bodies(client.events)).toEqual(["mine"])
      }).pipe(Effect.provide(pollerOn(repo, { POLL_INTERVAL: "10 seconds" })))
    })
  })
})
