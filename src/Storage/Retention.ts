/**
 * Retention: with MESSAGE_RETENTION set, messages older than it are deleted, on a schedule, in
 * small batches, each its own short transaction — a long one would hold back every node's delivery
 * horizon for as long as it ran. When several nodes share the database, one at a time does it (the
 * repo takes an advisory lock). Unset, everything is kept.
 */
import { Duration, Effect, Layer, Option, Schedule } from "effect"
import { AppConfig } from "../Config.js"
import { MessageRepo } from "./MessageRepo.js"

/** Messages deleted per transaction, and the pause between two, so that writers are never held long. */
export const batchSize = 1000
const pauseBetweenBatches = Duration.millis(20)

export const layer = Layer.scopedDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    const repo = yield* MessageRepo
    if (Option.isNone(config.messageRetention)) return
    const retention = config.messageRetention.value

    // One run: batch after batch while they come back full of expired messages.
    const run = Effect.iterate({ deleted: 0, young: 0, more: true }, {
      while: (state) => state.more,
      body: (state) =>
        repo.prune(retention, batchSize).pipe(
          Effect.tap((pruned) => (pruned.more ? Effect.sleep(pauseBetweenBatches) : Effect.void)),
          Effect.map((pruned) => ({
            deleted: state.deleted + pruned.deleted,
            young: state.young + pruned.young,
            more: pruned.more
          }))
        )
    }).pipe(
      Effect.tap(({ deleted }) =>
        deleted === 0 ? Effect.void : Effect.logInfo(
          `Deleted ${deleted} message(s) older than ${Duration.format(retention)} (MESSAGE_RETENTION)`
        )
      ),
      Effect.tap(({ young }) =>
        young === 0 ? Effect.void : Effect.logWarning(
          `${young} of them were created less than ${Duration.format(retention)} ago, yet sorted before ` +
            "expired ones in delivery order (a created_at set ahead by a writer, or by the database server's " +
            "clock): deletion takes a prefix of the delivery order, and stopping at them would keep " +
            "everything behind them for good"
        )
      ),
      Effect.catchTag("DatabaseError", (error) =>
        Effect.logWarning(`Deleting expired messages failed; trying again later. ${error.message}`))
    )

    yield* Effect.logInfo(`Keeping messages for ${Duration.format(retention)} (MESSAGE_RETENTION)`)
    yield* run.pipe(
      Effect.repeat(Schedule.spaced(config.retentionInterval)),
      Effect.annotateLogs({ service: "Retention" }),
      Effect.forkScoped
    )
  })
)
