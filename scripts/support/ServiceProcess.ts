/**
 * The one launcher of child processes for the tests, the bench and the soak: `spawn` starts a
 * process in a scope (its output kept, its exit awaitable) and stops it when the scope closes;
 * `start` runs pollcast's build (or another entry, such as the bench's baseline server) on free
 * ports with its own embedded PostgreSQL in a temporary DATA_DIR, and waits until it listens;
 * `startService` is `start` for the Promise-based scripts.
 */
import { Data, Deferred, Duration, Effect, Exit, Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

export const root = Path.resolve(import.meta.dirname, "../..")

export interface ServiceProcess {
  readonly child: ChildProcess.ChildProcess
  readonly pid: number
  /** Everything written to stdout and stderr so far. */
  readonly output: () => string
  /** Completes with the exit code (or the signal that ended it). */
  readonly exited: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

export interface SpawnOptions {
  /** The checkout to run in (this one by default). */
  readonly cwd?: string
  /** In a process group of its own, as a terminal starts it: `-pid` then signals the whole group. */
  readonly processGroup?: boolean
  /** Settings of this process's environment that the child must not see. */
  readonly unset?: ReadonlyArray<string>
  /**
   * How the scope's end stops a process still running: SIGKILL (the default), or SIGTERM followed
   * by SIGKILL if it has not exited 15 s later.
   */
  readonly stopSignal?: "SIGKILL" | "SIGTERM"
}

/** How long a process stopped with SIGTERM has to exit before it is sent SIGKILL. */
const stopTimeout = Duration.seconds(15)

// A last resort for an abrupt exit (an uncaught error): no child outlives the process that started it.
const running = new Set<ChildProcess.ChildProcess>()
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})

/**
 * Starts `command` (by default the service from source, `node --import tsx src/main.ts`) with
 * this process's environment, logging at Info (the level whose lines callers wait for), as one
 * process (WORKERS=1) unless this process's environment or `env` says otherwise, and `env`.
 */
export const spawn = (
  env: Record<string, string>,
  command: readonly [string, ...Array<string>] = [process.execPath, "--import", "tsx", "src/main.ts"],
  options: SpawnOptions = {}
) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const exit = yield* Deferred.make<{ code: number | null; signal: NodeJS.Signals | null }>()
      let output = ""
      const inherited = Object.fromEntries(
        Object.entries(process.env).filter(([name]) => !(options.unset ?? []).includes(name))
      )
      const child = ChildProcess.spawn(command[0], command.slice(1), {
        cwd: options.cwd ?? root,
        // One process unless the caller, or whoever runs the tests (WORKERS=2 npm test), asks for workers.
        env: { ...inherited, LOG_LEVEL: "Info", WORKERS: process.env.WORKERS ?? "1", ...env },
        stdio: ["ignore", "pipe", "pipe"],
        detached: options.processGroup === true
      })
      running.add(child)
      child.stdout.on("data", (chunk) => (output += chunk))
      child.stderr.on("data", (chunk) => (output += chunk))
      child.on("exit", (code, signal) => {
        running.delete(child)
        Deferred.unsafeDone(exit, Exit.succeed({ code, signal }))
      })
      return { child, pid: child.pid!, output: () => output, exited: Deferred.await(exit) } satisfies ServiceProcess
    }),
    (service) => stop(service, options)
  )

const isRunning = (child: ChildProcess.ChildProcess) => child.exitCode === null && child.signalCode === null

const stop = (service: ServiceProcess, options: SpawnOptions) =>
  Effect.gen(function*() {
    const kill = (signal: NodeJS.Signals) => {
      if (options.processGroup === true) {
        try {
          process.kill(-service.pid, signal)
        } catch {
          // The group is gone already.
        }
      } else if (isRunning(service.child)) service.child.kill(signal)
    }
    if (options.stopSignal !== "SIGTERM") {
      kill("SIGKILL")
      return
    }
    if (!isRunning(service.child)) return
    kill("SIGTERM")
    yield* service.exited.pipe(
      Effect.timeout(stopTimeout),
      Effect.catchTag("TimeoutException", () => Effect.zipRight(Effect.sync(() => kill("SIGKILL")), service.exited))
    )
  })

export class StartError extends Data.TaggedError("StartError")<{ readonly message: string; readonly output: string }> {}

/** Waits until the process has written `pattern`, and returns its match; fails if the process exits first. */
export const waitForOutput = (service: ServiceProcess, pattern: RegExp): Effect.Effect<RegExpExecArray, StartError> =>
  Effect.suspend(() => {
    const match = pattern.exec(service.output())
    if (match !== null) return Effect.succeed(match)
    if (isRunning(service.child)) return Effect.zipRight(Effect.sleep("50 millis"), waitForOutput(service, pattern))
    return Effect.fail(
      new StartError({ message: `${service.child.spawnargs.at(-1)} exited during start-up:\n${service.output()}`, output: service.output() })
    )
  })

/** A TCP port that was free a moment ago. */
export const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A new folder in the temporary directory, removed with everything in it when the scope closes. */
export const temporaryFolder = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), prefix))
      // An embedded PostgreSQL runs as another user when the script runs as root: it must reach its folder.
      Fs.chmodSync(folder, 0o755)
      return folder
    }),
    (folder) => Effect.sync(() => Fs.rmSync(folder, { recursive: true, force: true }))
  )

/** Compiles pollcast into dist/, as `npm start` does, so that scripts run what users run. */
export const build = () => {
  ChildProcess.execSync("npm run build --silent", { cwd: root, stdio: "inherit" })
}

export interface StartOptions {
  /** What Node runs: pollcast's compiled dist/main.js unless told otherwise (see `build`). */
  readonly entry?: string
  readonly nodeArgs?: ReadonlyArray<string>
  /** The HTTP port (default: a free one), e.g. to restart a node where its clients expect it. */
  readonly port?: number
}

export interface RunningService extends ServiceProcess {
  readonly url: string
  readonly databaseUrl: string
}

/**
 * Starts `entry` with plain Node and waits until it listens; `env` is added to this process's
 * environment. When the scope closes: SIGTERM (SIGKILL 15 s later), then its data folder removed.
 */
export const start = (env: Record<string, string> = {}, options: StartOptions = {}) =>
  Effect.gen(function*() {
    const dataDir = yield* temporaryFolder("pollcast-script-")
    const port = options.port ?? (yield* freePort)
    const pgPort = yield* freePort
    const databaseUrl = env.DATABASE_URL ?? process.env.DATABASE_URL ??
      `postgres://pollcast:pollcast@127.0.0.1:${pgPort}/pollcast`
    const service = yield* spawn(
      { HOST: "127.0.0.1", PORT: String(port), DATA_DIR: dataDir, EMBEDDED_POSTGRES_PORT: String(pgPort), ...env },
      [process.execPath, ...(options.nodeArgs ?? []), options.entry ?? "dist/main.js"],
      { stopSignal: "SIGTERM" }
    )
    yield* waitForOutput(service, /Listening on/)
    return { ...service, url: `http://127.0.0.1:${port}`, databaseUrl } satisfies RunningService
  })

/** `start` for Promise-based scripts: in a scope of its own, which `stop` closes. */
export const startService = async (env: Record<string, string> = {}, options: StartOptions = {}) => {
  const scope = Effect.runSync(Scope.make())
  const service = await Effect.runPromise(
    start(env, options).pipe(Scope.extend(scope), Effect.onError(() => Scope.close(scope, Exit.void)))
  )
  return { ...service, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
