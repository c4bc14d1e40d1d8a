/**
 * The composition root: the app on its database, with settings from the environment.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger } from "effect"
import * as App from "./App.js"
import { AppConfig } from "./Config.js"
import * as Database from "./Database.js"

const logLevel = Layer.unwrapEffect(Effect.map(AppConfig, (config) => Logger.minimumLogLevel(config.logLevel)))

const main = App.layer.pipe(
  Layer.provide(Database.layer),
  Layer.provide(logLevel),
  Layer.provide(AppConfig.layer)
)

NodeRuntime.runMain(Layer.launch(main))
