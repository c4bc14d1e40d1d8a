/**
 * The servers the bench compares, each started as a child process on a database of its own:
 * `pollcast` as shipped (woken by LISTEN/NOTIFY; access control off: no key, no rate limit, no
 * stream caps), `interval` (the same with NOTIFY_WAKEUP=false: polling on POLL_INTERVAL only),
 * `pollcast-auth` (access control on: every client and the publisher present a token, HS256,
 * verified per connection and per POST; each stream has its expiry timer; publishes are
 * rate-limited and streams counted per client and node, with limits above the load so that they
 * never refuse), `baseline` (baseline-server.mjs), `compare` (the build in --compare DIR), and
 * `pollcast-wN` (--workers): `pollcast` with WORKERS=N, a node:cluster primary and N workers.
 * Every setting not named here passes through from the bench's environment (WORKERS too, for the
 * targets that do not set it).
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { root, startService } from "../support/ServiceProcess.js"
import * as Tokens from "../support/Tokens.js"
import { type Options, type Target, workersOf } from "./options.js"
import * as ServerProcesses from "./serverProcesses.js"

export interface BenchServer {
  readonly url: string
  /** The process the bench started (a node of several processes: its primary). */
  readonly pid: number
  /** Every process of the server as its /stats lists them, or the one started. */
  readonly processes: () => Promise<ReadonlyArray<ServerProcesses.ServerProcess>>
  readonly output: () => string
  /** Headers every request to it carries (the token, with auth on). */
  readonly headers: Record<string, string>
  readonly stop: () => Promise<void>
}

/** How a scenario runs its targets, where it departs from (a). */
export interface RunOptions {
  /** NOTIFY_WAKEUP=false for every pollcast target: polls at fixed times only. */
  readonly intervalOnly?: boolean
  /** Publish as plain INSERTs into the server's database, not through POST /messages. */
  readonly inserts?: boolean
  /** Publish at random times (see publisher.ts). */
  readonly poissonSeed?: number
  /** Settings for the pollcast targets, over the bench's own (e.g. MAX_STREAMS for `scale`). */
  readonly env?: Record<string, string>
}

export type StartTarget = (target: Target, databaseUrl: string, pollIntervalMs: number, options?: RunOptions) => Promise<BenchServer>

const noLimits = { PUBLISH_RATE: "0", MAX_STREAMS: "0", MAX_STREAMS_PER_CLIENT: "0", MAX_CONNECTIONS_PER_CLIENT: "0" }
const highLimits = {
  PUBLISH_RATE: "1000000",
  PUBLISH_BURST: "1000000",
  MAX_STREAMS: "1000000",
  MAX_STREAMS_PER_CLIENT: "1000000",
  MAX_CONNECTIONS_PER_CLIENT: "1000000"
}

/**
 * Starts targets as `options` say. With --trace-gc, the servers' output (their GC traces) is kept
 * and written to bench-server-output.log in the temporary folder when the bench exits.
 */
export const targetStarter = async (options: Options): Promise<StartTarget> => {
  const nodeArgs = [
    "--expose-gc",
    "--import",
    Path.join(root, "scripts/bench/collectOnSignal.mjs"),
    ...(options.profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${Path.resolve(options.profileDir)}`]),
    ...(options.traceGc ? ["--trace-gc"] : []),
    ...(process.env.BENCH_PRELOAD ? ["--import", process.env.BENCH_PRELOAD] : [])
  ]
  let serverOutput = ""
  if (options.traceGc) process.on("exit", () => Fs.writeFileSync(Path.join(Os.tmpdir(), "bench-server-output.log"), serverOutput))

  const authSecret = Crypto.randomBytes(32).toString("base64url")
  // One token for every client: it is verified once per connection all the same.
  // (admin too: the bench reads /stats.)
  const benchToken = await Tokens.mint(
    Tokens.secretKey(authSecret),
    { publish: ["*"], subscribe: ["*"], admin: true },
    { subject: "bench", expiresIn: "3h" }
  )

  const start = async (
    env: Record<string, string>,
    entry: string | undefined,
    headers: Record<string, string>,
    workers?: number
  ): Promise<BenchServer> => {
    const service = await startService(env, { nodeArgs, ...(entry === undefined ? {} : { entry }) })
    // A node's workers may start listening after its primary says it listens.
    await ServerProcesses.settled(service.url, headers, workers === undefined || workers === 1 ? 1 : workers + 1)
    return {
      url: service.url,
      pid: service.pid,
      processes: async () => (await ServerProcesses.listed(service.url, headers)) ?? [{ name: "main", pid: service.pid }],
      output: service.output,
      headers,
      stop: async () => {
        if (options.traceGc) serverOutput += service.output()
        await service.stop()
      }
    }
  }

  return (target, databaseUrl, pollIntervalMs, runOptions = {}) => {
    if (target === "baseline") {
      return start({ DATABASE_URL: databaseUrl, POLL_INTERVAL_MS: String(pollIntervalMs) }, "scripts/bench/baseline-server.mjs", {})
    }
    const auth = target === "pollcast-auth"
    const build = target === "compare" ? options.compareDir : options.pollcastDir
    const given = runOptions.env?.WORKERS
    const workers = workersOf(target) ?? (given === undefined ? undefined : Number(given))
    return start(
      {
        DATABASE_URL: databaseUrl,
        POLL_INTERVAL: `${pollIntervalMs} millis`,
        // Heartbeats would make streams differ by timing; the baseline sends none either.
        HEARTBEAT_INTERVAL: "1 hour",
        LOG_LEVEL: "Info",
        NOTIFY_WAKEUP: target === "interval" || runOptions.intervalOnly === true ? "false" : "true",
        ...(auth ? { AUTH_SECRET: authSecret, ...highLimits } : noLimits),
        ...(workers === undefined ? {} : { WORKERS: String(workers) }),
        ...runOptions.env
      },
      build === undefined ? undefined : Path.join(build, "dist/main.js"),
      auth ? { authorization: `Bearer ${benchToken}` } : {},
      workers
    )
  }
}
