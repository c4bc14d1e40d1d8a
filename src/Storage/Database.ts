/**
 * The SqlClient the service runs on: the PostgreSQL at DATABASE_URL, or else an embedded one kept
 * in DATA_DIR and started (and stopped) with the layer. Migrations run once the client is up.
 */
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { Context, Data, Duration, Effect, Layer, Option, Redacted, Schedule } from "effect"
import * as Path from "node:path"
import { AppConfig } from "../Config.js"
import * as EmbeddedPostgres from "./EmbeddedPostgres.js"
import * as PgSocket from "./PgSocket.js"
import createMessages from "./migrations/00001_create_messages.js"
import retention from "./migrations/00002_retention.js"
import notifyWakeup from "./migrations/00003_notify_wakeup.js"
import quietWriters from "./migrations/00004_quiet_writers.js"
import sqlFunctions from "./migrations/00005_sql_functions.js"

export const databaseName = "pollcast"

export class DatabaseConnectError extends Data.TaggedError("DatabaseConnectError")<{ readonly message: string }> {}

/** host:port/database of a URL, without its credentials, for messages. */
const describeUrl = (url: Redacted.Redacted) => {
  try {
    const parsed = new URL(Redacted.value(url))
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`
  } catch {
    return "(an unparseable DATABASE_URL)"
  }
}

/** How a node's connections are named in pg_stat_activity. */
export const applicationName = "pollcast"

/** How long a connection may wait for PostgreSQL's answer before it is given up as stalled. */
export const defaultTimeout = Duration.seconds(10)

/**
 * A client for the database at `url`, pooled, with at most `maxConnections`, each closed when the
 * network stalls for `timeout` (see PgSocket).
 */
export const client = (
  url: Redacted.Redacted,
  maxConnections: number,
  name = applicationName,
  timeout: Duration.Duration = defaultTimeout
) =>
  PgClient.layer({
    url,
    maxConnections,
    applicationName: name,
    connectTimeout: Duration.seconds(5),
    idleTimeout: Duration.seconds(30),
    stream: PgSocket.watched(Duration.toMillis(timeout))
  })

/** Creates `name` on the server unless it exists; runs on a connection to its `postgres` database. */
export const ensureDatabase = (adminUrl: Redacted.Redacted, name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const existing = yield* sql`SELECT 1 FROM pg_database WHERE datname = ${name}`
    if (existing.length === 0) {
      yield* sql`CREATE DATABASE ${sql(name)}`
    }
  }).pipe(Effect.provide(client(adminUrl, 1)))

/**
 * Brings the schema up to date. Several nodes may start at once on a new database: the Migrator
 * serialises them with a table lock, but two can both try to create its bookkeeping table, so a
 * failed attempt is retried (and then finds the work done).
 */
export const migrate = PgMigrator.run({
  loader: PgMigrator.fromRecord({
    "00001_create_messages": createMessages,
    "00002_retention": retention,
    "00003_notify_wakeup": notifyWakeup,
    "00004_quiet_writers": quietWriters,
    "00005_sql_functions": sqlFunctions
  })
}).pipe(
  Effect.retry({ times: 3, schedule: Schedule.spaced("200 millis") }),
  Effect.tap((applied) =>
    Effect.forEach(applied, ([id, name]) => Effect.logInfo(`Applied migration ${id}_${name}`), { discard: true })
  ),
  Effect.provide(NodeContext.layer)
)

/** Where the database is: DATABASE_URL, or an embedded server started for as long as the layer lives. */
export class DatabaseUrl extends Context.Tag("pollcast/DatabaseUrl")<DatabaseUrl, Redacted.Redacted>() {}

const embedded = Layer.scoped(
  DatabaseUrl,
  Effect.gen(function*() {
    const config = yield* AppConfig
    const server = yield* EmbeddedPostgres.start({
      dataDir: Path.join(config.dataDir, "postgres"),
      port: config.embeddedPostgresPort
    })
    yield* ensureDatabase(server.url("postgres"), databaseName)
    yield* Effect.logInfo(
      `Other programs can reach the embedded database at ${Redacted.value(server.url(databaseName))}`
    )
    return server.url(databaseName)
  })
)

const databaseUrl = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) =>
    Option.match(config.databaseUrl, {
      onNone: () => embedded,
      onSome: (url) => Layer.succeed(DatabaseUrl, url)
    }))
)

/**
 * The migrated database, with a pool of DATABASE_POOL_SIZE connections named `name`. Provided by
 * databaseUrl, the pool is closed before an embedded server is stopped. A worker process of a
 * node (`migrating: false`) finds the schema up to date: its primary migrated it before starting it.
 */
export const layerNamed = (name: string, migrating = true) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const config = yield* AppConfig
      const url = yield* DatabaseUrl
      const connected = client(url, config.databasePoolSize, name, config.databaseTimeout).pipe(
        Layer.mapError((error) =>
          new DatabaseConnectError({
            message: `Could not connect to PostgreSQL at ${describeUrl(url)}: ${
              error.cause instanceof Error ? error.cause.message : error.message
            }`
          })
        )
      )
      return migrating ? Layer.effectDiscard(migrate).pipe(Layer.provideMerge(connected)) : connected
    })
  ).pipe(Layer.provideMerge(databaseUrl))

export const layer = layerNamed(applicationName)
