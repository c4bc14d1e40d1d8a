/**
 * The bench's PostgreSQL: embedded in a temporary folder (removed by `close`), or the server at
 * DATABASE_URL; a fresh database for every server started (created and dropped here), and what
 * the bench reads of the server itself (transactions committed, its processes' CPU).
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import * as Path from "node:path"
import pg from "pg"
import * as EmbeddedPostgres from "../../src/Storage/EmbeddedPostgres.js"
import { cpuSeconds } from "../support/processStats.js"
import { freePort, temporaryFolder } from "../support/ServiceProcess.js"

export interface BenchDatabase {
  readonly postgresVersion: string
  readonly synchronousCommit: string
  readonly fresh: () => Promise<{ readonly name: string; readonly url: string }>
  readonly drop: (name: string) => Promise<unknown>
  /** Transactions committed on a database (each statement outside a transaction is one). */
  readonly transactions: (name: string) => Promise<number>
  /** CPU seconds used so far by the server's processes (every one pg_stat_activity lists), by pid. */
  readonly serverCpu: () => Promise<Map<number, number>>
  readonly close: () => Promise<void>
}

/** The server at DATABASE_URL, or an embedded one (synchronous_commit=off unless `durable`). */
export const open = async (durable: boolean): Promise<BenchDatabase> => {
  const scope = Effect.runSync(Scope.make())
  let adminUrl: string
  if (process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== "") {
    const url = new URL(process.env.DATABASE_URL)
    url.pathname = "/postgres"
    adminUrl = url.toString()
  } else {
    const server = await Effect.runPromise(
      Effect.gen(function*() {
        const folder = yield* temporaryFolder("pollcast-bench-")
        return yield* EmbeddedPostgres.start({
          dataDir: Path.join(folder, "postgres"),
          port: yield* freePort,
          settings: durable ? {} : { synchronous_commit: "off" }
        })
      }).pipe(Scope.extend(scope))
    )
    adminUrl = Redacted.value(server.url("postgres"))
  }
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  const setting = async (name: string) => (await admin.query(`SHOW ${name}`)).rows[0][name] as string

  let databases = 0
  return {
    postgresVersion: await setting("server_version"),
    synchronousCommit: await setting("synchronous_commit"),
    fresh: async () => {
      const name = `bench_${process.pid}_${++databases}`
      await admin.query(`CREATE DATABASE ${name}`)
      const url = new URL(adminUrl)
      url.pathname = `/${name}`
      return { name, url: url.toString() }
    },
    drop: (name) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
    transactions: async (name) =>
      Number((await admin.query("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", [name])).rows[0].xact_commit),
    serverCpu: async () => {
      const pids = (await admin.query("SELECT pid FROM pg_stat_activity")).rows.map((row) => row.pid as number)
      return new Map(pids.map((pid) => [pid, cpuSeconds(pid)]))
    },
    close: async () => {
      await admin.end()
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}
