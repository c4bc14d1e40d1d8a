/**
 * Runs pollcast as a child process for scripts (benchmarks, screenshots): its own embedded
 * PostgreSQL in a temporary DATA_DIR unless DATABASE_URL is given, on free ports.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

export interface RunningService {
  readonly url: string
  readonly pid: number
  readonly child: ChildProcess.ChildProcess
  readonly databaseUrl: string
  readonly output: () => string
  /** SIGTERM (SIGKILL if it has not exited 15 s later), then removes its data folder. */
  readonly stop: () => Promise<void>
}

export const root = Path.resolve(import.meta.dirname, "../..")

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** Compiles pollcast into dist/, as `npm start` does, so that scripts run what users run. */
export const build = () => {
  ChildProcess.execSync("npm run build --silent", { cwd: root, stdio: "inherit" })
}

export interface StartOptions {
  readonly entry?: string
  readonly nodeArgs?: ReadonlyArray<string>
  /** The HTTP port (default: a free one), e.g. to restart a node where its clients expect it. */
  readonly port?: number
  /** Aborting it during start-up kills the process (and the start fails). */
  readonly signal?: AbortSignal
}

/** How long `stop` waits after SIGTERM before it sends SIGKILL. */
const stopTimeoutMillis = 15_000

/**
 * Starts `entry` (pollcast's compiled dist/main.js unless told otherwise; see `build`) with plain
 * Node, and waits until it listens. `env` is added to this process's environment.
 */
export const startService = async (env: Record<string, string> = {}, options: StartOptions = {}): Promise<RunningService> => {
  const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pollcast-script-"))
  Fs.chmodSync(dataDir, 0o755)
  const port = options.port ?? await freePort()
  const pgPort = await freePort()
  const databaseUrl = env.DATABASE_URL ?? process.env.DATABASE_URL ??
    `postgres://pollcast:pollcast@127.0.0.1:${pgPort}/pollcast`
  const child = ChildProcess.spawn(process.execPath, [...(options.nodeArgs ?? []), options.entry ?? "dist/main.js"], {
    cwd: root,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATA_DIR: dataDir,
      EMBEDDED_POSTGRES_PORT: String(pgPort),
      ...env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const abort = () => child.kill("SIGKILL")
  options.signal?.addEventListener("abort", abort, { once: true })
  let output = ""
  child.stdout!.on("data", (chunk) => (output += chunk))
  child.stderr!.on("data", (chunk) => (output += chunk))
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  await new Promise<void>((resolve, reject) => {
    const check = setInterval(() => {
      if (output.includes("Listening on")) {
        clearInterval(check)
        options.signal?.removeEventListener("abort", abort)
        resolve()
      } else if (child.exitCode !== null || child.signalCode !== null) {
        clearInterval(check)
        Fs.rmSync(dataDir, { recursive: true, force: true })
        reject(new Error(`pollcast exited during start-up:\n${output}`))
      }
    }, 50)
  })
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    child,
    databaseUrl,
    output: () => output,
    stop: async () => {
      child.kill("SIGTERM")
      const killLater = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMillis)
      await exited
      clearTimeout(killLater)
      Fs.rmSync(dataDir, { recursive: true, force: true })
    }
  }
}
