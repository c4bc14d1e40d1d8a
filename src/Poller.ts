/**
 * The poller: on every tick of `Schedule.fixed(POLL_INTERVAL)`, one query reads what is new for
 * every channel, and the Broadcast fans it out. However many clients and channels a node serves,
 * it polls once per interval; polls never overlap (they run one after another in a single fiber);
 * a full batch means more is waiting, so the next poll follows at once. A failing poll is logged
 * and retried with capped exponential backoff from the same position, so nothing is skipped.
 */
import { Clock, Context, Effect, Layer, Option, Ref, Schedule, Stream } from "effect"
import { isNonEmptyReadonlyArray } from "effect/Array"
import * as Broadcast from "./Broadcast.js"
import { AppConfig } from "./Config.js"
import type { MessageId } from "./Message.js"
import { MessageRepo } from "./MessageRepo.js"

export interface PollerStatus {
  /** When a poll last succeeded (epoch milliseconds). */
  readonly lastSuccessAt: number
  readonly consecutiveFailures: number
  readonly polls: number
  /** The position the next poll reads after. */
  readonly position: MessageId
}

export class Poller extends Context.Tag("pollcast/Poller")<Poller, {
  readonly status: Effect.Effect<PollerStatus>
}>() {}

/** Capped exponential backoff for a database that does not answer. */
export const backoff = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))

const retryLogged = <A, E extends Error, R>(what: string, effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.tapError((error) => Effect.logWarning(`${what} failed; retrying with backoff. ${error.message}`)),
    Effect.retry(backoff)
  )

/**
 * The new messages after `status.position`, batch by batch, forever; `status` follows along.
 */
export const changes = (status: Ref.Ref<PollerStatus>) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const repo = yield* MessageRepo

    const poll = Effect.gen(function*() {
      const { consecutiveFailures, position } = yield* Ref.get(status)
      const messages = yield* repo.poll(position, config.pollBatchSize).pipe(
        Effect.tapError(() => Ref.update(status, (s) => ({ ...s, consecutiveFailures: s.consecutiveFailures + 1 })))
      )
      if (consecutiveFailures > 0) {
        yield* Effect.logInfo(`Polling recovered after ${consecutiveFailures} failed attempts`)
      }
      const now = yield* Clock.currentTimeMillis
      yield* Ref.update(status, (s) => ({
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
        // An outage is expected: one line per attempt, without a stack trace.
        Stream.tapError((error) => Effect.logWarning(`Poll failed; retrying with backoff. ${error.message}`)),
        Stream.retry(backoff),
        // The retries never end, so no error gets past them.
        Stream.orDie
      )

    return Stream.fromSchedule(Schedule.fixed(config.pollInterval)).pipe(Stream.flatMap(() => catchUp))
  }).pipe(Stream.unwrap)

const make = (start: MessageId) =>
  Effect.gen(function*() {
    const broadcast = yield* Broadcast.Broadcast
    const status = yield* Ref.make<PollerStatus>({
      lastSuccessAt: yield* Clock.currentTimeMillis,
      consecutiveFailures: 0,
      polls: 0,
      position: start
    })
    yield* changes(status).pipe(
      Stream.runForEach(broadcast.publish),
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

/** The Poller and the Broadcast it feeds, both starting at the newest final row. */
export const layer = Layer.unwrapEffect(
  Effect.gen(function*() {
    const repo = yield* MessageRepo
    const start = yield* retryLogged("Reading the newest message", repo.head)
    return Layer.scoped(Poller, make(start)).pipe(Layer.provideMerge(Broadcast.layer(start)))
  })
)
