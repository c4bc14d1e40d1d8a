/**
 * The composition root: the app on its database, with settings from the environment, as one
 * process or as a node's primary or worker (WORKERS, see Cluster/Sizing).
 */
import { Cause, ConfigError, Effect, FiberRef, HashSet, Layer, Logger } from "effect"
import * as Cluster from "node:cluster"
import * as App from "./App.js"
import * as Primary from "./Cluster/Primary.js"
import * as Sizing from "./Cluster/Sizing.js"
import * as Worker from "./Cluster/Worker.js"
import { AppConfig } from "./Config.js"
import * as Database from "./Storage/Database.js"
import * as Lifecycle from "./Lifecycle.js"
import * as Logging from "./Logging.js"
import * as Runtime from "./Runtime.js"

const logging = Layer.unwrapEffect(Effect.map(AppConfig, (config) => Logging.layer(config.logFormat, config.logLevel)))

/** A single process, a node's primary, or one of its workers (see Cluster/Primary). */
const node = Layer.unwrapEffect(
  Effect.gen(function*() {
    if (Cluster.default.isWorker) return Worker.layer.pipe(Layer.provide(Database.layerNamed(Database.applicationName, false)))
    const { workers } = yield* Sizing.plan
    return workers === 1 ? App.layer.pipe(Layer.provide(Database.layer)) : Primary.layer(workers).pipe(Layer.provide(Database.layer))
  })
)

const main = node.pipe(
  Layer.provide(Lifecycle.layer),
  Layer.provide(logging),
  Layer.provide(AppConfig.layer)
)

/** Expected start-up failures get one plain line; anything else, the whole cause. */
const report = (cause: Cause.Cause<unknown>) => {
  if (Cause.isInterruptedOnly(cause)) return Effect.void
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") {
    const error = failure.value
    if (ConfigError.isConfigError(error)) return Effect.logError(`Invalid configuration: ${String(error)}`)
    if (error instanceof Error) {
      const because = error.cause instanceof Error ? error.cause.message : ""
      return Effect.logError(`Start-up failed: ${[error.message, because].filter((text) => text !== "").join(": ")}`)
    }
  }
  return Effect.logError("pollcast stopped unexpectedly", cause)
}

// The logger is the one LOG_FORMAT chooses, so not runMain's pretty one besides.
// Once the layers have failed, their batched logger is closed: the report goes to the plain one.
const reported = (cause: Cause.Cause<unknown>) =>
  Effect.locally(report(cause), FiberRef.currentLoggers, HashSet.make(Logger.defaultLogger))

Runtime.runMain(Layer.launch(main).pipe(Effect.tapErrorCause(reported)), {
  disableErrorReporting: true,
  disablePrettyLogger: true
})
