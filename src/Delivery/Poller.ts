/**
 * The poller: one query reads what is new for every channel, and the Broadcast fans it out. It
 * polls on every tick of `Schedule.fixed(POLL_INTERVAL)`, and is woken besides: at once by this
 * node's own commits; with NOTIFY_WAKEUP, by other nodes' commits, which they announce after they
 * commit (see Wakeups); and by the probe, every WAKEUP_PROBE_INTERVAL, which sees other systems'
 * plain INSERTs without their doing anything (and without costing them anything). A wake-up is an
 * extra tick and never carries data, so the interval stays the safety net for one lost.
 *
 * A tick starts a poll at once when none is running; while one runs, any number of ticks queue
 * exactly one more, so polls never overlap and a burst of inserts becomes a few polls, each
 * carrying more. Polls start at least WAKEUP_MIN_GAP apart. A full batch means more is waiting, so
 * the next poll follows at once. A failing poll is logged and retried with capped exponential
 * backoff from the same position, so nothing is skipped. However many clients and channels a node
 * serves, it makes one query per tick.
 */
import { Clock, Context, Duration, Effect, Layer, Metric, MetricBoundaries, Option, Queue, Ref, Schedule, Stream } from "effect"
import { isNonEmptyReadonlyArray, type NonEmptyReadonlyArray } from "effect/Array"
import * as Broadcast from "./Broadcast.js"
import { AppConfig } from "../Config.js"
import type { Message, MessageId } from "../Domain/Message.js"
import { MessageRepo, type Probe } from "../Storage/MessageRepo.js"
import { Wakeups } from "./Wakeups.js"
import { counter, histogram } from "../Metrics.js"

export interface PollerStatus {
  /** When a poll last succeeded (epoch milliseconds). */
  readonly lastSuccessAt: number
  readonly consecutiveFailures: number
  readonly polls: number
  /** Probes answered (WAKEUP_PROBE_INTERVAL). */
  readonly probes: number
  /** The position the next poll reads after. */
  readonly position: MessageId
  /** Why only a restart lets this node deliver again, if it came to that (see ReplacedDatabaseError). */
  readonly restartNeeded: Option.Option<string>
}

export class Poller extends Context.Tag("pollcast/Poller")<Poller, {
  readonly status: Effect.Effect<PollerStatus>
}>() {}

/**
 * Whom the poller serves: where its batches go (`publish`, which completes once they are fanned
 * out with the time that took, so that polling keeps pace with the fan-out), and when writes made
 * there have committed, so that it polls at once. In a single process, its Broadcast and its repo;
 * in a node of several processes, the primary's workers (see Cluster/Primary).
 */
export class Fanout extends Context.Tag("pollcast/Fanout")<Fanout, {
  readonly publish: (messages: NonEmptyReadonlyArray<Message>) => Effect.Effect<Duration.Duration>
  readonly committed: Stream.Stream<void>
}>() {}

// Registered when defined, so that a scrape shows the series at 0 before anything happens.
export const polls = counter("pollcast_polls_total", "Polls of the database that succeeded").register()
export const pollFailures = counter("pollcast_poll_failures_total", "Polls of the database that failed (each is retried with backoff)").register()
export const pollDuration = histogram("pollcast_poll_duration_seconds", "Time a successful poll query took", MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 16 })).register()
export const pollRows = histogram("pollcast_poll_rows", "Rows a successful poll returned", MetricBoundaries.fromIterable([0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000])).register()

export const probesMade = counter("pollcast_wakeup_probes_total", "Probes of the database for writes (WAKEUP_PROBE_INTERVAL) that were answered").register()

/** Capped exponential backoff for a database that does not answer. */
export const backoff = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))

const retryLogged = <A, E extends Error, R>(what: string, effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.tapError((error) => Effect.logWarning(`${what} failed; retrying with backoff. ${error.message}`)),
    Effect.retry(backoff)
  )

/**
 * Polls forever, handing each non-empty batch to `deliver` (the fan-out) as it comes; `status`
 * follows along.
 */
export const run = (
  status: Ref.Ref<PollerStatus>,
  deliver: (messages: NonEmptyReadonlyArray<Message>) => Effect.Effect<Duration.Duration>,
  committed: Stream.Stream<void>
) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const repo = yield* MessageRepo
    const wakeups = yield* Wakeups
    // Time the fan-out took since the last tick was taken.
    let fanOutMillis = 0
    // The highest sequence number of every message read so far, for the probe: the second half of
    // an id, 16 lowercase hex digits, which compare as strings as the numbers do.
    let highestIdRead = "0000000000000000"

    // The tables are gone: the database was dropped and created again under the node, which
    // would otherwise answer 503 for good. A start would create them; so does the poller, and goes
    // on from its position: the same server's transaction counter has passed it, so everything
    // written from now on sorts after it.
    const recreateTables = (position: MessageId) =>
      Effect.logWarning(
        "pollcast's tables are gone from the database (was it dropped and created again?): " +
          "creating them again, as a start would; the messages stored before are gone with them"
      ).pipe(
        Effect.zipRight(repo.recreateTables(position)),
        Effect.zipRight(Effect.logInfo("Created pollcast's tables again; delivery goes on")),
        Effect.catchTag("ReplacedDatabaseError", (error) =>
          Effect.logError(error.message).pipe(
            Effect.zipRight(Ref.update(status, (s) => ({ ...s, restartNeeded: Option.some(error.message) })))
          )),
        Effect.catchAll((error) => Effect.logWarning(`Creating pollcast's tables again failed: ${error.message}`))
      )

    const poll = Effect.gen(function*() {
      const { consecutiveFailures, position } = yield* Ref.get(status)
      const [elapsed, messages] = yield* repo.poll(position, config.pollBatchSize).pipe(
        Effect.timed,
        Effect.tapError((error) =>
          Ref.update(status, (s) => ({ ...s, consecutiveFailures: s.consecutiveFailures + 1 })).pipe(
            Effect.zipRight(Metric.increment(pollFailures)),
            Effect.zipRight(error.tableMissing ? recreateTables(position) : Effect.void)
          )
        )
      )
      yield* Metric.update(pollDuration, Duration.toSeconds(elapsed))
      yield* Metric.update(pollRows, messages.length)
      for (const message of messages) {
        const seq = message.id.slice(17)
        if (seq > highestIdRead) highestIdRead = seq
      }
      yield* Metric.increment(polls)
      if (consecutiveFailures > 0) {
        yield* Effect.logInfo(`Polling recovered after ${consecutiveFailures} failed attempts`)
      }
      const now = yield* Clock.currentTimeMillis
      yield* Ref.update(status, (s) => ({
        ...s,
        lastSuccessAt: now,
        consecutiveFailures: 0,
        polls: s.polls + 1,
        position: isNonEmptyReadonlyArray(messages) ? messages[messages.length - 1]!.id : s.position
      }))
      return messages
    })

    // One tick: poll, and poll again at once while batches come back full.
    const catchUp = Stream.paginateEffect(undefined, () =>
      poll.pipe(
        Effect.map((messages) =>
          [messages, messages.length === config.pollBatchSize ? Option.some(undefined) : Option.none()] as const
        )
      )).pipe(
        Stream.filter(isNonEmptyReadonlyArray),
        Stream.tap((messages) =>
          Effect.map(deliver(messages), (elapsed) => {
            fanOutMillis += Duration.toMillis(elapsed)
          })
        ),
        // An outage is expected: one line per attempt, without a stack trace.
        Stream.tapError((error) => Effect.logWarning(`Poll failed; retrying with backoff. ${error.message}`)),
        Stream.retry(backoff),
        // The retries never end, so no error gets past them.
        Stream.orDie
      )

    // The probe: a poll when an INSERT has taken an id since the last probe (whoever wrote it,
    // however), or when the horizon has moved while an id taken may not have been read yet (its
    // transaction was still running at the last poll). A failed probe is passed over: the
    // interval's poll reports an outage.
    let previousProbe: Probe | undefined
    const probed = (probe: Probe) => {
      const moved = previousProbe === undefined || probe.lastId !== previousProbe.lastId ||
        (probe.horizon !== previousProbe.horizon && probe.lastId.toString(16).padStart(16, "0") > highestIdRead)
      previousProbe = probe
      return moved
    }
    const probes = Duration.toMillis(config.wakeupProbeInterval) === 0 ? Stream.never : Stream.fromSchedule(
      Schedule.spaced(config.wakeupProbeInterval)
    ).pipe(
      Stream.mapEffect(() =>
        Effect.option(Effect.tap(repo.probe, () =>
          Effect.zipRight(Metric.increment(probesMade), Ref.update(status, (s) => ({ ...s, probes: s.probes + 1 })))))
      ),
      Stream.filter((probe) => Option.isSome(probe) && probed(probe.value))
    )

    // The ticks of the interval and of the wake-ups (this node's own commits, other nodes'
    // announced ones, the probe) go into a queue of one that drops the rest: whatever arrives while
    // a poll runs makes exactly one more.
    const ticks = yield* Queue.dropping<void>(1)
    yield* Stream.mergeAll([
      Stream.fromSchedule(Schedule.fixed(config.pollInterval)),
      committed,
      wakeups.ticks,
      probes
    ], { concurrency: "unbounded" }).pipe(
      Stream.runForEach(() => Queue.offer(ticks, undefined)),
      Effect.forkScoped
    )
    const minGap = Duration.toMillis(config.wakeupMinGap)
    const restPerFanOut = 1 / config.fanOutShare - 1
    let lastStart = Number.NEGATIVE_INFINITY
    // Waits before taking a tick, so that ticks arriving meanwhile make one poll: WAKEUP_MIN_GAP
    // after the last poll began, and long enough after the last tick's fan-out (the tick is taken
    // once it is done) that fanning out takes at most FANOUT_SHARE of the node's time. A write to
    // a client costs about the same whatever it carries (a system call): at 1,000 clients and 100
    // msg/s, a poll per message saturated a 2-core node (3.8× the CPU of interval-only, POSTs
    // 15× slower). Paced, light load still gets a poll per message, and under load each poll
    // carries more, in fewer and larger writes.
    const nextTick = Effect.gen(function*() {
      const wait = Math.max(lastStart + minGap - (yield* Clock.currentTimeMillis), restPerFanOut * fanOutMillis)
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
      yield* Queue.take(ticks)
      lastStart = yield* Clock.currentTimeMillis
      fanOutMillis = 0
    })

    return yield* Stream.repeatEffect(nextTick).pipe(Stream.flatMap(() => catchUp), Stream.runDrain)
  })

const make = (start: MessageId) =>
  Effect.gen(function*() {
    const fanout = yield* Fanout
    const status = yield* Ref.make<PollerStatus>({
      lastSuccessAt: yield* Clock.currentTimeMillis,
      consecutiveFailures: 0,
      polls: 0,
      probes: 0,
      position: start,
      restartNeeded: Option.none()
    })
    yield* run(status, fanout.publish, fanout.committed).pipe(
      Effect.scoped,
      // Failures are retried inside; a defect (a bug) would otherwise end polling silently while
      // the process looks healthy, so it is logged and polling resumes from the same position.
      Effect.catchAllDefect((defect) =>
        Effect.logError("Polling stopped by a defect; resuming in a second", defect).pipe(
          Effect.zipRight(Effect.sleep("1 second"))
        )
      ),
      Effect.forever,
      Effect.annotateLogs({ service: "Poller" }),
      Effect.forkScoped
    )
    return Poller.of({ status: Ref.get(status) })
  })

/** The Poller and the Fanout it feeds (made by `fanout`), both starting at the newest final row. */
export const layerFeeding = <ROut, E, RIn>(fanout: (start: MessageId) => Layer.Layer<Fanout | ROut, E, RIn>) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const repo = yield* MessageRepo
      const start = yield* retryLogged("Reading the newest message", repo.head)
      return Layer.scoped(Poller, make(start)).pipe(Layer.provideMerge(fanout(start)))
    })
  )

/** This process's Broadcast as the Fanout, told of this process's commits by its repo. */
export const broadcastFanout = Layer.effect(
  Fanout,
  Effect.gen(function*() {
    const broadcast = yield* Broadcast.Broadcast
    const repo = yield* MessageRepo
    return Fanout.of({
      publish: (messages) => Effect.map(Effect.timed(broadcast.publish(messages)), ([elapsed]) => elapsed),
      committed: repo.committed
    })
  })
)

/** The Poller and the Broadcast it feeds, in one process. */
export const layer = layerFeeding((start) => broadcastFanout.pipe(Layer.provideMerge(Broadcast.layer(start))))
