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

const root = Path.resolve(import.meta.dirname, "../..")

/**
 * Starts the service (`node --import tsx src/main.ts`, or `command`); the process is killed, if
 * still running, when the scope closes.
 */
export const spawn = (
  env: Record<string, string>,
  command: readonly [string, ...Array<string>] = [process.execPath, "--import", "tsx", "src/main.ts"]
) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const exit = yield* Deferred.make<{ code: number | null; signal: NodeJS.Signals | null }>()
      let output = ""
      const child = ChildProcess.spawn(command[0], command.slice(1), {
        cwd: root,
        env: { ...process.env, LOG_LEVEL: "Info", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      child.stdout.on("data", (chunk) => (output += chunk))
      child.stderr.on("data", (chunk) => (output += chunk))
      child.on("exit", (code, signal) => Deferred.unsafeDone(exit, Exit.succeed({ code, signal })))
      return { child, output: () => output, exited: Deferred.await(exit) } satisfies ServiceProcess
    }),
    (service) =>
      Effect.sync(() => {
        if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill("SIGKILL")
      })
  )
