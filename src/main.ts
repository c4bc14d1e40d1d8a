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

/** Runs as a single process, a node's primary, or one of its workers (see Cluster/Primary). */
const node = Effect.gen(function*() {
  if (Cluster.default.isWorker) {
    return yield* Layer.launch(Worker.layer.pipe(Layer.provide(Database.layerNamed(Database.applicationName, false))))
  }
  const { workers } = yield* Sizing.plan
  return yield* workers === 1
    ? Layer.launch(App.layer.pipe(Layer.provide(Database.layer)))
    : Layer.launch(Primary.layer(workers).pipe(Layer.provide(Database.layer)))
})

// Lifecycle first: built before the node's layers and released after them, while the log is open.
const main = node.pipe(
  Effect.provide(Lifecycle.layer),
  Effect.provide(logging),
  Effect.provide(AppConfig.layer)
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

Runtime.runMain(main.pipe(Effect.tapErrorCause(reported)), {
  disableErrorReporting: true,
  disablePrettyLogger: true
})
