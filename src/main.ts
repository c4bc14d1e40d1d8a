/**
 * The composition root: the app on its database, with settings from the environment.
 */
import { Cause, ConfigError, Effect, FiberRef, HashSet, Layer, Logger } from "effect"
import * as App from "./App.js"
import { AppConfig } from "./Config.js"
import * as Database from "./Storage/Database.js"
import * as Lifecycle from "./Lifecycle.js"
import * as Logging from "./Logging.js"
import * as Runtime from "./Runtime.js"

const logging = Layer.unwrapEffect(Effect.map(AppConfig, (config) => Logging.layer(config.logFormat, config.logLevel)))

const main = App.layer.pipe(
  Layer.provide(Database.layer),
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
