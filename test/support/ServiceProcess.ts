/**
 * The service as users run it: `node --import tsx src/main.ts` in a child process, configured by
 * its environment, for tests of start-up, signals and shutdown.
 */
import { Deferred, Effect, Exit } from "effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"

export interface ServiceProcess {
  readonly child: ChildProcess.ChildProcess
  /** Everything written to stdout and stderr so far. */
  readonly output: () => string
  /** Completes with the exit code (or the signal that ended it). */
  readonly exited: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

export const root = Path.resolve(import.meta.dirname, "../..")

export interface SpawnOptions {
  /** The checkout to run in (this one by default). */
  readonly cwd?: string
  /** In a process group of its own, as a terminal starts it: `-pid` then signals the whole group. */
  readonly processGroup?: boolean
  /** Settings of the test's environment that the service must not see. */
  readonly unset?: ReadonlyArray<string>
}

/**
 * Starts the service (`node --import tsx src/main.ts`, or `command`); the process (or its group)
 * is killed, if still running, when the scope closes.
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
        env: { ...inherited, LOG_LEVEL: "Info", ...env },
        stdio: ["ignore", "pipe", "pipe"],
        detached: options.processGroup === true
      })
      child.stdout.on("data", (chunk) => (output += chunk))
      child.stderr.on("data", (chunk) => (output += chunk))
      child.on("exit", (code, signal) => Deferred.unsafeDone(exit, Exit.succeed({ code, signal })))
      return { child, output: () => output, exited: Deferred.await(exit) } satisfies ServiceProcess
    }),
    (service) =>
      Effect.sync(() => {
        if (options.processGroup === true) {
          try {
            process.kill(-service.child.pid!, "SIGKILL")
          } catch {
            // The group is gone already.
          }
        } else if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill("SIGKILL")
      })
  )
