/**
 * A whole pollcast node (HTTP server, poller, broadcast) on the test database, serving on a free
 * local port for the rest of the enclosing Scope. Several may share the database, as nodes do.
 */
import { HttpServer } from "@effect/platform"
import { Context, Effect, Layer, Logger, LogLevel, type Redacted } from "effect"
import * as App from "../../src/App.js"
import * as Database from "../../src/Database.js"
import { EventStream } from "../../src/EventStream.js"
import { TestDatabase } from "./TestDatabase.js"
import { testConfig } from "./TestConfig.js"

export interface TestNode {
  readonly url: (path: string) => string
  readonly context: Context.Context<App.Services | HttpServer.HttpServer>
  readonly connections: Effect.Effect<number>
}

export const start = (settings: Record<string, string> = {}, options: { readonly databaseUrl?: Redacted.Redacted } = {}) =>
  Effect.gen(function*() {
    const database = yield* TestDatabase
    const context = yield* Layer.build(
      App.layer.pipe(
        Layer.provide(Database.client(options.databaseUrl ?? database.url, 5)),
        Layer.provide(testConfig({ POLL_INTERVAL: "50 millis", ...settings })),
        // Warnings (failed polls, cut-off clients) are part of what tests show; start-up chatter is not.
        Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
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
