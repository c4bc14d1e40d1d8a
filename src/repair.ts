/**
 * `npm run repair`: makes a database restored from a dump into another PostgreSQL servable again
 * (see RestoredDatabaseError in MessageRepo). Reads the same settings as the service (DATABASE_URL,
 * or the embedded server in DATA_DIR), refuses while any pollcast node is connected, and renumbers
 * the stored messages below the server's transaction counter, keeping their order.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Data, Effect, Logger, LogLevel, Option } from "effect"
import { AppConfig } from "./Config.js"
import * as Database from "./Storage/Database.js"
import { checkTransactionIds, connectedNodes, renumberRestored } from "./Storage/MessageRepo.js"

/** Nodes still connected: renumbering under them would break their positions. */
class NodesConnectedError extends Data.TaggedError("NodesConnectedError")<{
  readonly nodes: ReadonlyArray<{ readonly address: string; readonly connections: number }>
}> {
  override get message() {
    return `pollcast nodes are still connected to this database (${
      this.nodes.map(({ address, connections }) => `${connections} from ${address}`).join(", ")
    }): stop every node, then run the repair again`
  }
}

const repair = Effect.gen(function*() {
  const needed = yield* checkTransactionIds.pipe(
    Effect.as(false),
    Effect.catchTag("RestoredDatabaseError", (error) => Effect.logInfo(error.message).pipe(Effect.as(true)))
  )
  if (!needed) {
    return yield* Effect.logInfo("Nothing to repair: every stored message is below this server's transaction counter")
  }
  const nodes = yield* connectedNodes(Database.applicationName)
  if (nodes.length > 0) {
    return yield* new NodesConnectedError({ nodes })
  }
  const renumbered = yield* renumberRestored
  yield* Effect.logInfo(
    `Renumbered ${renumbered} message(s) below this server's transaction counter, in their order; ` +
      "clients holding old ids will be told to reload (a reset event) when they reconnect"
  )
})

const main = Effect.scoped(repair).pipe(
  Effect.provide(Database.layerNamed(`${Database.applicationName}-repair`)),
  Effect.provide(Logger.minimumLogLevel(LogLevel.Info)),
  Effect.provide(AppConfig.layer),
  // Expected failures (a refusal, an unreachable database) are one line; anything else in full.
  Effect.tapErrorCause((cause) =>
    Option.match(Cause.failureOption(cause), {
      onNone: () => Effect.logError("Repair failed", cause),
      onSome: (error) => Effect.logError(`Repair failed: ${error.message}`)
    })
  )
)

NodeRuntime.runMain(main, { disableErrorReporting: true })
