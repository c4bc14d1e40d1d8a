/**
 * The node's stop as its log tells it: which signal stopped it, any signal after that, and a last
 * line once everything else is released. Provided beneath the app's layers, so that it is built
 * before them and released after them, while the log is still open.
 */
import { Cause, Effect, Exit, Layer, Runtime } from "effect"

const signals = ["SIGINT", "SIGTERM"] as const

export const layer = Layer.scopedDiscard(
  Effect.gen(function*() {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    let received = 0
    const onSignal = (signal: NodeJS.Signals) => {
      received++
      runFork(Effect.logInfo(received === 1 ? `Received ${signal}: stopping` : `Received ${signal} again: the shutdown under way goes on`))
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => signals.forEach((signal) => process.on(signal, onSignal))),
      () => Effect.sync(() => signals.forEach((signal) => process.off(signal, onSignal)))
    )
    yield* Effect.addFinalizer((exit) =>
      Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause) ? Effect.logInfo("pollcast stopped") : Effect.void
    )
  })
)
