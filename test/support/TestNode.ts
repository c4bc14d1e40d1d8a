/**
 * A whole pollcast node (HTTP server, poller, broadcast) on the test database, serving on a free
 * local port for the rest of the enclosing Scope. Several may share the database, as nodes do.
 */
import { HttpServer } from "@effect/platform"
import { Cause, Context, Duration, Effect, Layer, Logger, LogLevel, type Redacted } from "effect"
import * as App from "../../src/App.js"
import * as Database from "../../src/Storage/Database.js"
import { EventStream } from "../../src/Delivery/EventStream.js"
import { TestDatabase } from "./TestDatabase.js"
import { testConfig } from "./TestConfig.js"

export interface TestNode {
  readonly url: (path: string) => string
  readonly context: Context.Context<App.Services | HttpServer.HttpServer>
  readonly connections: Effect.Effect<number>
}

/** Every log line of a node, whatever its level: its level, message and cause. */
const captureLogs = (logs: Array<string>) =>
  Layer.merge(
    Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ cause, logLevel, message }) => {
        logs.push([logLevel.label, ...[message].flat().map(String), Cause.isEmpty(cause) ? "" : Cause.pretty(cause)].join(" "))
      })
    ),
    Logger.minimumLogLevel(LogLevel.All)
  )

export interface StartOptions {
  readonly databaseUrl?: Redacted.Redacted
  /** Collects every log line of the node here instead of printing its warnings. */
  readonly logs?: Array<string>
}

export const start = (settings: Record<string, string> = {}, options: StartOptions = {}) =>
  Effect.gen(function*() {
    const database = yield* TestDatabase
    const context = yield* Layer.build(
      App.layer.pipe(
        Layer.provide(Database.client(
          options.databaseUrl ?? database.url,
          5,
          Database.applicationName,
          settings.DATABASE_TIMEOUT === undefined ? Database.defaultTimeout : Duration.decode(settings.DATABASE_TIMEOUT as Duration.DurationInput)
        )),
        // No rate limit unless a test sets one: tests publish bursts from one address.
        Layer.provide(testConfig({ POLL_INTERVAL: "50 millis", PUBLISH_RATE: "0", ...settings })),
        // Warnings (failed polls, cut-off clients) are part of what tests show; start-up chatter is not.
        Layer.provide(options.logs === undefined ? Logger.minimumLogLevel(LogLevel.Warning) : captureLogs(options.logs))
      )
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : 0
    return {
      url: (path: string) => `http://127.0.0.1:${port}${path}`,
      context,
      connections: Context.get(context, EventStream).connections
    } satisfies TestNode
  })
