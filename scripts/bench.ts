/**
 * `npm run bench`: pollcast against a hand-rolled baseline (scripts/baseline-server.mjs), same load,
 * same machine, same PostgreSQL. Starts PostgreSQL (embedded, or the server at DATABASE_URL, on
 * which it creates and drops a database per run), each server as a child process, and load
 * generators in separate processes (scripts/bench/clients.ts) holding real SSE connections.
 *
 * Targets: `pollcast` as shipped (woken by LISTEN/NOTIFY; access control off: no key, no rate
 * limit, no stream caps), `interval` (the same with NOTIFY_WAKEUP=false: polling on POLL_INTERVAL
 * only), `pollcast-auth` (access control on: every client and the publisher present a token, HS256,
 * verified per connection and per POST; each stream has its expiry timer; publishes are
 * rate-limited and streams counted per client and node, with limits above the load so that they
 * never refuse), and `baseline`. Each scenario runs the targets it compares (see below).
 *
 * Scenario `fanout` is (a)'s load made to compare builds (auth on and off, --compare): polls at
 * fixed times only, and plain INSERTs at random times, the same for every target of a round, so
 * that each message waits for its poll a uniformly random part of the interval in every process,
 * where (a)'s waits follow how that process's wake-ups happen to coalesce (see the README).
 *
 * Scenario `writers` measures what a node costs the database's other writers (their INSERTs/s into
 * messages against a copy of the table without pollcast's objects), delivery of POSTs and of plain
 * INSERTs at POLL_INTERVAL 1 s, and the database's idle load with 1 and 10 nodes (pollcast and compare).
 *
 * Options: --scenarios a,b,c,d,e,fanout,wakeup,polls,intervals,writers (default: all)   --quick (smaller, shorter)
 *          --targets pollcast,interval,pollcast-auth,baseline (default: all)
 *          --compare DIR: also run, in (a)-(e) and fanout, the pollcast built in DIR (another checkout, with
 *          `npm run build` done there) as the target `compare`, e.g. the previous commit, to measure
 *          what a change costs in the same run (see scripts/bench/without-metrics.patch)
 *          --pollcast DIR: the pollcast targets run the build in DIR instead of this checkout's (with
 *          --compare, two earlier commits side by side)
 *          --repeat N: every scenario N times, targets interleaved; the table shows medians, and each
 *          round's differences in the fan-out figures are printed under it, with (from 6 rounds on)
 *          the median of those differences and its 95% interval
 *          --seconds N: how long (a), (b), (c), `fanout` and `wakeup` publish (default 12; 5 with --quick)
 *          --pool FILE,...: with --repeat, adds the rounds of earlier runs (their bench-results JSON)
 *          to this run's medians and intervals, when those runs measured the same builds
 * Writes bench-results/bench-<time>.json, docs/bench-chart.svg and docs/bench-wakeup-chart.svg,
 * and prints a table. Any other setting of pollcast passes through the environment
 * (e.g. WAKEUP_MIN_GAP="0 millis").
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Jose from "jose"
import * as Crypto from "node:crypto"
import pg from "pg"
import * as EmbeddedPostgres from "../src/Storage/EmbeddedPostgres.js"
import { writeChart, writeIntervalChart } from "./bench/chart.js"
import type { Command, Report } from "./bench/clients.js"
import { Histogram } from "./bench/histogram.js"
import { cpuSeconds, machine, rss } from "./bench/processStats.js"
import { publish, type Published } from "./bench/publisher.js"
import { build, freePort, root, type RunningService, startService } from "./support/service.js"
import { argument } from "./support/arguments.js"

type Target = "pollcast" | "interval" | "pollcast-auth" | "baseline" | "compare"
const directoryArgument = (name: string) => {
  const given = argument(name)
  if (given === undefined) return undefined
  const directory = Path.resolve(given)
  if (!Fs.existsSync(Path.join(directory, "dist/main.js"))) {
    throw new Error(`--${name} needs a checkout of pollcast built with npm run build`)
  }
  return directory
}
/** --compare DIR: a pollcast built in another checkout, run beside the others. */
const compareDir = directoryArgument("compare")
/** --pollcast DIR: the pollcast targets' build, if not this checkout's. */
const pollcastDir = directoryArgument("pollcast")
const targetNames: Record<Target, string> = {
  pollcast: pollcastDir === undefined ? "pollcast" : `pollcast at ${Path.basename(pollcastDir)}`,
  interval: "interval-only",
  "pollcast-auth": "pollcast, auth on",
  baseline: "baseline",
  compare: `pollcast at ${compareDir === undefined ? "" : Path.basename(compareDir)}`
}

const quick = process.argv.includes("--quick")
/**
 * The embedded PostgreSQL runs with synchronous_commit=off unless --durable: this machine's disk
 * takes up to ~100 ms to fsync now and then, which would show up in every latency figure of both
 * servers alike and hide theirs. Commits are still written, just not waited for.
 */
const durable = process.argv.includes("--durable")
const scenarios = new Set((argument("scenarios") ?? "a,b,c,d,e,fanout,wakeup,polls,intervals,writers").split(","))
const targets = (argument("targets") ?? `pollcast,interval,pollcast-auth,baseline${compareDir === undefined ? "" : ",compare"}`)
  .split(",") as Array<Target>
for (const target of targets) if (!(target in targetNames)) throw new Error(`Unknown target ${target}`)
if (targets.includes("compare") && compareDir === undefined) throw new Error("The target compare needs --compare DIR")
/** --profile DIR: run the servers under --cpu-prof, writing their profiles to DIR. */
const profileDir = argument("profile")
const nodeArgs = [
  "--expose-gc",
  "--import",
  Path.join(root, "scripts/bench/collectOnSignal.mjs"),
  ...(profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${Path.resolve(profileDir)}`]),
  ...(process.argv.includes("--trace-gc") ? ["--trace-gc"] : []),
  ...(process.env.BENCH_PRELOAD ? ["--import", process.env.BENCH_PRELOAD] : [])
]

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))
const now = () => performance.timeOrigin + performance.now()
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits

build()

// --- PostgreSQL ------------------------------------------------------------------------------

const scope = Effect.runSync(Scope.make())
let adminUrl: string
if (process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== "") {
  const url = new URL(process.env.DATABASE_URL)
  url.pathname = "/postgres"
  adminUrl = url.toString()
} else {
  const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pollcast-bench-"))
  Fs.chmodSync(folder, 0o755)
  const server = await Effect.runPromise(
    EmbeddedPostgres.start({
      dataDir: Path.join(folder, "postgres"),
      port: await freePort(),
      settings: durable ? {} : { synchronous_commit: "off" }
    }).pipe(Scope.extend(scope))
  )
  adminUrl = Redacted.value(server.url("postgres"))
  process.on("exit", () => Fs.rmSync(folder, { recursive: true, force: true }))
}
const admin = new pg.Client({ connectionString: adminUrl })
await admin.connect()
const postgresVersion = (await admin.query("SHOW server_version")).rows[0].server_version as string
const synchronousCommit = (await admin.query("SHOW synchronous_commit")).rows[0].synchronous_commit as string

let databases = 0
const freshDatabase = async () => {
  const name = `bench_${process.pid}_${++databases}`
  await admin.query(`CREATE DATABASE ${name}`)
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return { name, url: url.toString() }
}
const dropDatabase = (name: string) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
/** Transactions committed on a database (each statement outside a transaction is one). */
const transactions = async (name: string) =>
  Number((await admin.query("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", [name])).rows[0].xact_commit)

// --- Servers -----------------------------------------------------------------------------------

const authSecret = Crypto.randomBytes(32).toString("base64url")
// One token for every client: it is verified once per connection all the same.
// (admin too: the bench reads /stats.)
const benchToken = await new Jose.SignJWT({ pollcast: { publish: ["*"], subscribe: ["*"], admin: true } })
  .setProtectedHeader({ alg: "HS256" })
  .setSubject("bench")
  .setExpirationTime("3h")
  .sign(new TextEncoder().encode(authSecret))

interface BenchServer extends RunningService {
  /** Headers every request to it carries (the token, with auth on). */
  readonly headers: Record<string, string>
}

const noLimits = { PUBLISH_RATE: "0", MAX_STREAMS: "0", MAX_STREAMS_PER_CLIENT: "0", MAX_CONNECTIONS_PER_CLIENT: "0" }
const highLimits = { PUBLISH_RATE: "1000000", PUBLISH_BURST: "1000000", MAX_STREAMS: "1000000", MAX_STREAMS_PER_CLIENT: "1000000", MAX_CONNECTIONS_PER_CLIENT: "1000000" }

/** How a scenario runs its targets, where it departs from (a). */
interface RunOptions {
  /** NOTIFY_WAKEUP=false for every pollcast target: polls at fixed times only. */
  readonly intervalOnly?: boolean
  /** Publish as plain INSERTs into the server's database, not through POST /messages. */
  readonly inserts?: boolean
  /** Publish at random times (see publish). */
  readonly poissonSeed?: number
}

const startTarget = async (target: Target, databaseUrl: string, pollIntervalMs: number, options: RunOptions = {}): Promise<BenchServer> => {
  if (target === "baseline") {
    const service = await startService({ DATABASE_URL: databaseUrl, POLL_INTERVAL_MS: String(pollIntervalMs) }, {
      entry: "scripts/baseline-server.mjs",
      nodeArgs
    })
    return { ...service, headers: {} }
  }
  const auth = target === "pollcast-auth"
  const service = await startService({
    DATABASE_URL: databaseUrl,
    POLL_INTERVAL: `${pollIntervalMs} millis`,
    // Heartbeats would make streams differ by timing; the baseline sends none either.
    HEARTBEAT_INTERVAL: "1 hour",
    LOG_LEVEL: "Info",
    NOTIFY_WAKEUP: target === "interval" || options.intervalOnly === true ? "false" : "true",
    ...(auth ? { AUTH_SECRET: authSecret, ...highLimits } : noLimits)
  }, {
    nodeArgs,
    ...(target === "compare"
      ? { entry: Path.join(compareDir!, "dist/main.js") }
      : pollcastDir === undefined
      ? {}
      : { entry: Path.join(pollcastDir, "dist/main.js") })
  })
  return { ...service, headers: auth ? { authorization: `Bearer ${benchToken}` } : {} }
}

// --- Load generators ---------------------------------------------------------------------------

const clientsPerGenerator = 10_000

class Generators {
  private constructor(private readonly children: Array<ChildProcess.ChildProcess>) {}

  static start(clients: number) {
    const count = Math.max(1, Math.ceil(clients / clientsPerGenerator))
    return new Generators(Array.from({ length: count }, () =>
      ChildProcess.fork(Path.join(root, "scripts/bench/clients.ts"), [], {
        execArgv: ["--import", "tsx"],
        stdio: ["ignore", "inherit", "inherit", "ipc"]
      })))
  }

  get pids() {
    return this.children.map((child) => child.pid!)
  }

  private ask<A>(child: ChildProcess.ChildProcess, command: Command, answer: string) {
    return new Promise<A>((resolve) => {
      const listener = (message: { type: string }) => {
        if (message.type === answer) {
          child.off("message", listener)
          resolve(message as A)
        }
      }
      child.on("message", listener)
      child.send(command)
    })
  }

  async connect(server: BenchServer, paths: ReadonlyArray<{ path: string; group: string; probe: boolean }>) {
    const { hostname, port } = new URL(server.url)
    await Promise.all(this.children.map((child, index) =>
      this.ask(child, {
        type: "connect",
        host: hostname,
        port: Number(port),
        headers: server.headers,
        // Several source addresses keep each generator well inside the ephemeral port range.
        localAddress: `127.0.0.${index + 2}`,
        clients: paths.filter((_, i) => i % this.children.length === index),
        concurrency: 256
      }, "connected")
    ))
  }

  async report() {
    const reports = await Promise.all(this.children.map((child) => this.ask<Report>(child, { type: "report" }, "report")))
    const latency = new Histogram()
    for (const report of reports) latency.merge(report.latency)
    const groups = new Map<string, Map<string, number>>()
    for (const report of reports) {
      for (const [group, { crcs }] of Object.entries(report.groups)) {
        const merged = groups.get(group) ?? new Map<string, number>()
        for (const [crc, count] of Object.entries(crcs)) merged.set(crc, (merged.get(crc) ?? 0) + count)
        groups.set(group, merged)
      }
    }
    return {
      latency,
      groups,
      probes: reports.flatMap((report) => report.probes),
      connected: reports.reduce((sum, report) => sum + report.connected, 0),
      disconnected: reports.reduce((sum, report) => sum + report.disconnected, 0),
      connectMillis: reports.flatMap((report) => report.connectMillis).sort((a, b) => a - b),
      lastReceiptAt: Math.max(...reports.map((report) => report.lastReceiptAt)),
      probeMessages: reports.reduce((sum, report) => sum + report.probeMessages, 0)
    }
  }

  async reset() {
    await Promise.all(this.children.map((child) => this.ask(child, { type: "reset" }, "reset")))
  }

  close() {
    for (const child of this.children) child.send({ type: "close" } satisfies Command)
  }
}

// --- One measurement ---------------------------------------------------------------------------

interface Load {
  readonly clients: number
  readonly channels: number
  readonly rate: number
  readonly seconds: number
}

const channelOf = (index: number, channels: number) => `bench-${index % channels}`

const clientPaths = (load: Load) => {
  const probeEvery = Math.max(1, Math.floor(load.clients / 100))
  return Array.from({ length: load.clients }, (_, i) => ({
    path: `/events?channel=${channelOf(i, load.channels)}`,
    group: channelOf(i, load.channels),
    probe: i < load.channels || i % probeEvery === 0
  }))
}

const percentile = (sorted: ReadonlyArray<number>, fraction: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!

interface Delivery {
  readonly latencyMs: { p50: number; p90: number; p99: number; max: number }
  /** POST /messages round trips: part of every delivery latency. */
  readonly postMs: { p50: number; p99: number }
  readonly publishedRate: number
  readonly offeredRate: number
  readonly deliveries: number
  readonly deliveriesPerSecond: number
  readonly complete: boolean
  readonly problems: ReadonlyArray<string>
  readonly serverCpuSeconds: number
  /** The event loop's thread alone (the rest: garbage collection and other helper threads). */
  readonly serverMainThreadCpuSeconds: number
  readonly generatorCpuSeconds: number
  readonly databaseQueriesPerSecond: number
  /** pollcast's polls (and notifications received) per second while publishing, from /stats. */
  readonly pollsPerSecond?: number | undefined
  readonly notificationsPerSecond?: number | undefined
  readonly rssAfterMB: number
}

interface PollerStats {
  readonly polls: number
  readonly wakeup: { readonly notifications: number }
}

/** pollcast's poll and notification counts; undefined for the baseline, whose /stats has neither. */
const pollerStats = async (server: BenchServer): Promise<PollerStats | undefined> => {
  const response = await fetch(new URL("/stats", server.url), { headers: server.headers }).catch(() => undefined)
  if (response?.ok !== true) return undefined
  const stats = (await response.json()) as Partial<PollerStats>
  return typeof stats.polls === "number" && stats.wakeup !== undefined ? { polls: stats.polls, wakeup: stats.wakeup } : undefined
}

/**
 * Publishes `load` (through POST, or with `insertInto` as plain SQL INSERTs into that database)
 * and waits for the probes to have it all; then checks what every client got.
 */
const measureDelivery = async (
  server: BenchServer,
  generators: Generators,
  database: string,
  load: Load,
  pollIntervalMs: number,
  insertInto?: string,
  poissonSeed?: number
): Promise<Delivery> => {
  // Warm up (JIT, connection pools on both sides) at the same rate, then start measuring afresh.
  await publish({
    url: server.url,
    headers: server.headers,
    rate: load.rate,
    seconds: 2,
    channelOf: (sequence) => channelOf(sequence, load.channels),
    databaseUrl: insertInto
  })
  await sleep(500 + 2 * pollIntervalMs)
  await generators.reset()
  const cpuBefore = cpuSeconds(server.pid)
  const mainThreadCpuBefore = cpuSeconds(server.pid, server.pid)
  const generatorCpuBefore = generators.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)
  const transactionsBefore = await transactions(database)
  const statsBefore = await pollerStats(server)
  const published: Published = await publish({
    url: server.url,
    headers: server.headers,
    rate: load.rate,
    seconds: load.seconds,
    channelOf: (sequence) => channelOf(sequence, load.channels),
    databaseUrl: insertInto,
    poissonSeed
  })
  const expected = (group: string) => published.byChannel.get(group) ?? { count: 0, sequenceSum: 0 }
  // Wait for the probes, giving up after 10 s without progress.
  let report = await generators.report()
  let progressAt = now()
  let previous = -1
  while (report.probes.some((probe) => probe.count < expected(probe.group).count) && now() - progressAt < 10_000) {
    await sleep(250)
    report = await generators.report()
    if (report.probeMessages !== previous) {
      previous = report.probeMessages
      progressAt = now()
    }
  }
  const serverCpuSeconds = cpuSeconds(server.pid) - cpuBefore
  const serverMainThreadCpuSeconds = cpuSeconds(server.pid, server.pid) - mainThreadCpuBefore
  const generatorCpuSeconds = generators.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - generatorCpuBefore
  const elapsed = (now() - published.firstAt) / 1000
  const statsAfter = await pollerStats(server)
  await sleep(1100) // statistics reach pg_stat_database at most once a second
  const databaseQueriesPerSecond = ((await transactions(database)) - transactionsBefore - 1) / (elapsed + 1.1)

  const problems: Array<string> = []
  if (report.disconnected > 0) problems.push(`${report.disconnected} clients disconnected`)
  for (const probe of report.probes) {
    const want = expected(probe.group)
    if (probe.duplicates > 0) problems.push(`a probe on ${probe.group} got ${probe.duplicates} duplicates`)
    if (probe.count !== want.count || probe.sequenceSum !== want.sequenceSum) {
      problems.push(`a probe on ${probe.group} got ${probe.count} of ${want.count} messages`)
    }
  }
  let deliveries = 0
  for (const [group, crcs] of report.groups) {
    if (crcs.size > 1) problems.push(`clients on ${group} received ${crcs.size} different streams`)
    const clients = [...crcs.values()].reduce((sum, count) => sum + count, 0)
    const probes = report.probes.filter((probe) => probe.group === group)
    const received = probes.reduce((sum, probe) => sum + probe.count, 0) / Math.max(1, probes.length)
    deliveries += clients * received
  }
  const deliverySeconds = Math.max(0.001, (report.lastReceiptAt - published.firstAt) / 1000)
  return {
    latencyMs: {
      p50: round(report.latency.percentile(0.5)),
      p90: round(report.latency.percentile(0.9)),
      p99: round(report.latency.percentile(0.99)),
      max: round(report.latency.max / 1000)
    },
    postMs: { p50: round(published.postLatency.percentile(0.5)), p99: round(published.postLatency.percentile(0.99)) },
    publishedRate: round(published.rate),
    offeredRate: load.rate,
    deliveries: Math.round(deliveries),
    deliveriesPerSecond: Math.round(deliveries / deliverySeconds),
    complete: problems.length === 0,
    problems: [...new Set(problems)].slice(0, 5),
    serverCpuSeconds: round(serverCpuSeconds, 2),
    serverMainThreadCpuSeconds: round(serverMainThreadCpuSeconds, 2),
    generatorCpuSeconds: round(generatorCpuSeconds, 2),
    databaseQueriesPerSecond: round(databaseQueriesPerSecond),
    pollsPerSecond: statsBefore === undefined || statsAfter === undefined
      ? undefined
      : round((statsAfter.polls - statsBefore.polls) / elapsed),
    notificationsPerSecond: statsBefore === undefined || statsAfter === undefined
      ? undefined
      : round((statsAfter.wakeup.notifications - statsBefore.wakeup.notifications) / elapsed),
    rssAfterMB: round(rss(server.pid) / 1024 / 1024)
  }
}

interface Connection {
  readonly clients: number
  readonly connectSeconds: number
  readonly connectMs: { p50: number; p99: number; max: number }
  readonly rssIdleMB: number
  readonly rssWithClientsMB: number
  /** (RSS with the clients − RSS idle) / clients: includes the heap's one-off growth. */
  readonly kbPerConnection: number
  /** What the second half of the clients added, per client. */
  readonly marginalKbPerConnection: number
  /** Both, with RSS measured after a full garbage collection: what the connections keep alive. */
  readonly liveKbPerConnection: number
  readonly liveMarginalKbPerConnection: number
  readonly idleQueriesPerSecond: number
}

/** The server's resident memory now, and after a full garbage collection (see collectOnSignal.mjs). */
const memory = async (pid: number) => {
  const raw = rss(pid)
  process.kill(pid, "SIGUSR2")
  await sleep(1000)
  return { raw, live: rss(pid) }
}

/** Starts a server on a fresh database, connects the clients, and measures the idle state. */
const connectClients = async (target: Target, load: Load, pollIntervalMs: number, idleSeconds: number, options: RunOptions = {}) => {
  const database = await freshDatabase()
  const server = await startTarget(target, database.url, pollIntervalMs, options)
  await sleep(2000)
  const idle = await memory(server.pid)
  const rssIdle = idle.raw
  const generators = Generators.start(load.clients)
  // Clients connect in two halves. The first half also grows the heap's young generation to its
  // working size (tens of MB, whatever the number of clients); the second half shows what each
  // further connection costs.
  const paths = clientPaths(load)
  const half = Math.floor(paths.length / 2)
  const started = now()
  await generators.connect(server, paths.slice(0, half))
  const halfConnectedAt = now()
  await sleep(2000)
  const halfway = await memory(server.pid)
  const rssHalf = halfway.raw
  const resumedAt = now()
  await generators.connect(server, paths.slice(half))
  const connectSeconds = (halfConnectedAt - started + now() - resumedAt) / 1000
  const report = await generators.report()
  const idleBefore = await transactions(database.name)
  await sleep(idleSeconds * 1000)
  const idleQueriesPerSecond = ((await transactions(database.name)) - idleBefore - 1) / idleSeconds
  const withClients = await memory(server.pid)
  const rssWithClients = withClients.raw
  const connection: Connection = {
    clients: report.connected,
    connectSeconds: round(connectSeconds, 2),
    connectMs: {
      p50: round(percentile(report.connectMillis, 0.5)),
      p99: round(percentile(report.connectMillis, 0.99)),
      max: round(report.connectMillis[report.connectMillis.length - 1] ?? NaN)
    },
    rssIdleMB: round(rssIdle / 1024 / 1024),
    rssWithClientsMB: round(rssWithClients / 1024 / 1024),
    kbPerConnection: round((rssWithClients - rssIdle) / 1024 / Math.max(1, report.connected), 2),
    marginalKbPerConnection: round((rssWithClients - rssHalf) / 1024 / Math.max(1, paths.length - half), 2),
    liveKbPerConnection: round((withClients.live - idle.live) / 1024 / Math.max(1, report.connected), 2),
    liveMarginalKbPerConnection: round((withClients.live - halfway.live) / 1024 / Math.max(1, paths.length - half), 2),
    idleQueriesPerSecond: round(idleQueriesPerSecond)
  }
  return {
    server,
    generators,
    database,
    connection,
    stop: async () => {
      generators.close()
      lastServerOutput += server.output()
      await server.stop()
      await dropDatabase(database.name)
    }
  }
}

interface RunResult {
  readonly connection: Connection
  readonly delivery: Delivery
}

const runOnce = async (
  target: Target,
  load: Load,
  pollIntervalMs: number,
  idleSeconds: number,
  options: RunOptions = {}
): Promise<RunResult> => {
  const run = await connectClients(target, load, pollIntervalMs, idleSeconds, options)
  try {
    const delivery = await measureDelivery(
      run.server,
      run.generators,
      run.database.name,
      load,
      pollIntervalMs,
      options.inserts === true ? run.database.url : undefined,
      options.poissonSeed
    )
    return { connection: run.connection, delivery }
  } finally {
    await run.stop()
  }
}

// --- Other writers (scenario writers) ------------------------------------------------------------

/** The middle of a few figures (the median, for an odd count). */
const middleOf = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** Single-row INSERTs a second into `table` from `connections` connections for `seconds`, each commit durable. */
const insertRate = async (databaseUrl: string, table: string, connections = 8, seconds = 4) => {
  const clients = await Promise.all(Array.from({ length: connections }, async () => {
    const client = new pg.Client({ connectionString: databaseUrl })
    await client.connect()
    // Whatever the bench's server does (synchronous_commit=off unless --durable): the cost being
    // measured is paid while a commit is flushed.
    await client.query("SET synchronous_commit = on")
    return client
  }))
  let count = 0
  const until = now() + seconds * 1000
  await Promise.all(clients.map(async (client) => {
    while (now() < until) {
      await client.query(`INSERT INTO ${table} (channel, author, body) VALUES ('writers', 'other system', 'x')`)
      count++
    }
  }))
  await Promise.all(clients.map((client) => client.end()))
  return count / seconds
}

interface WriterRates {
  /** INSERTs/s into messages with the node running, per round, and their median. */
  readonly messages: ReadonlyArray<number>
  /** The same into messages_copy: the table's columns, defaults, checks and indexes, nothing of pollcast's. */
  readonly copy: ReadonlyArray<number>
  readonly ratio: number
  /** With the wake-up trigger a writer may choose to put back (this build only). */
  readonly withTrigger?: number | undefined
  /**
   * The node's CPU (% of a core) while the writers insert into messages, which it reads and polls,
   * and into the copy, which it does not: what it takes from the cores PostgreSQL uses too.
   */
  readonly nodeCpuPercent?: { readonly messages: number; readonly copy: number } | undefined
}

const writerRates = async (databaseUrl: string, tryTrigger: boolean, nodePid: number): Promise<WriterRates> => {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    await client.query("CREATE TABLE IF NOT EXISTS messages_copy (LIKE messages INCLUDING ALL)")
    const messages: Array<number> = []
    const copy: Array<number> = []
    const nodeCpu = { messages: { cpu: 0, seconds: 0 }, copy: { cpu: 0, seconds: 0 } }
    const timedRate = async (table: "messages" | "messages_copy") => {
      const cpuBefore = cpuSeconds(nodePid)
      const started = now()
      const rate = await insertRate(databaseUrl, table)
      const spent = nodeCpu[table === "messages" ? "messages" : "copy"]
      spent.cpu += cpuSeconds(nodePid) - cpuBefore
      spent.seconds += (now() - started) / 1000
      return rate
    }
    for (let round = 0; round < 3; round++) {
      // Alternating which goes first, so that neither always follows the other.
      if (round % 2 === 0) {
        messages.push(await timedRate("messages"))
        copy.push(await timedRate("messages_copy"))
      } else {
        copy.push(await timedRate("messages_copy"))
        messages.push(await timedRate("messages"))
      }
    }
    let withTrigger: number | undefined
    if (tryTrigger) {
      await client.query(`CREATE TRIGGER messages_notify_wakeup AFTER INSERT ON messages
        FOR EACH STATEMENT EXECUTE FUNCTION messages_notify_wakeup()`)
      withTrigger = await insertRate(databaseUrl, "messages")
      await client.query("DROP TRIGGER messages_notify_wakeup ON messages")
    }
    return {
      messages,
      copy,
      ratio: round(middleOf(messages) / middleOf(copy), 3),
      withTrigger,
      nodeCpuPercent: {
        messages: round(100 * nodeCpu.messages.cpu / nodeCpu.messages.seconds),
        copy: round(100 * nodeCpu.copy.cpu / nodeCpu.copy.seconds)
      }
    }
  } finally {
    await client.end()
  }
}

/** CPU seconds used so far by the database server's processes (every one pg_stat_activity lists). */
const databaseCpu = async () => {
  const pids = (await admin.query("SELECT pid FROM pg_stat_activity")).rows.map((row) => row.pid as number)
  return new Map(pids.map((pid) => [pid, cpuSeconds(pid)]))
}
const cpuSince = (before: Map<number, number>, after: Map<number, number>) =>
  [...after].reduce((sum, [pid, seconds]) => sum + (before.has(pid) ? seconds - before.get(pid)! : 0), 0)

interface IdleLoad {
  readonly nodes: number
  readonly queriesPerSecond: number
  /** The database server's CPU, in % of one core. */
  readonly databaseCpuPercent: number
}

/** The database's load with `target`'s node alone and with nine more, none of them busy, over 10 s each. */
const idleLoad = async (target: Target, database: { readonly name: string; readonly url: string }) => {
  const measure = async (nodes: number): Promise<IdleLoad> => {
    await sleep(3000)
    const cpuBefore = await databaseCpu()
    const before = await transactions(database.name)
    const started = now()
    await sleep(10_000)
    const cpuAfter = await databaseCpu()
    const elapsed = (now() - started) / 1000
    await sleep(1100) // statistics reach pg_stat_database at most once a second
    return {
      nodes,
      queriesPerSecond: round(((await transactions(database.name)) - before - 1) / elapsed),
      databaseCpuPercent: round(100 * cpuSince(cpuBefore, cpuAfter) / elapsed, 2)
    }
  }
  const alone = await measure(1)
  const more = await Promise.all(Array.from({ length: 9 }, () => startTarget(target, database.url, 1000)))
  try {
    return [alone, await measure(10)]
  } finally {
    await Promise.all(more.map((node) => node.stop()))
  }
}

// --- Scenarios ---------------------------------------------------------------------------------

const log = (text: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}`)
process.on("exit", () => {
  if (process.argv.includes("--trace-gc")) Fs.writeFileSync("/tmp/bench-server-output.log", lastServerOutput)
})
let lastServerOutput = ""

/**
 * --repeat N: every scenario N times, the targets in turn each round (in reverse order every other
 * round, so that none always runs first or last); the table shows each figure's median over the
 * rounds. One run's figures spread more than the differences some comparisons look for (a p99 by
 * ±20% between runs of one build): a median of interleaved runs is what can tell 5% apart.
 */
const repeat = Math.max(1, Number(argument("repeat") ?? 1))
let roundIndex = 0

/** Runs `f` for each of `compared` that --targets allows. */
const perTarget = async <A>(compared: ReadonlyArray<Target>, f: (target: Target) => Promise<A>) => {
  const out: Partial<Record<Target, A>> = {}
  const order = roundIndex % 2 === 0 ? compared : [...compared].reverse()
  for (const target of order) if (targets.includes(target)) out[target] = await f(target)
  return out
}
// Access control is compared wherever the fan-out is measured; wake-up against interval-only where
// its issue asks (every scenario at POLL_INTERVAL 100 ms or more would do, at the cost of time).
const againstBaseline: ReadonlyArray<Target> = ["pollcast", "pollcast-auth", "baseline", "compare"]
const withInterval: ReadonlyArray<Target> = ["pollcast", "interval", "baseline", "compare"]
const allTargets: ReadonlyArray<Target> = ["pollcast", "interval", "pollcast-auth", "baseline", "compare"]

const pollIntervalMs = 100
/** --seconds N: how long (a), (b), (c) and `wakeup` publish (longer: steadier tail percentiles). */
const seconds = Number(argument("seconds") ?? (quick ? 5 : 12))

/** One round of every scenario asked for, into `results`. */
const runRound = async (results: Record<string, unknown>) => {
  if (scenarios.has("a")) {
    const load = { clients: 1000, channels: 1, rate: 100, seconds }
    log(`(a) ${load.clients} clients, ${load.rate} messages/s, POLL_INTERVAL ${pollIntervalMs} millis`)
    results.a = {
      load,
      pollIntervalMs,
      ...(await perTarget(againstBaseline, (target) => runOnce(target, load, pollIntervalMs, 3)))
    }
  }

  if (scenarios.has("fanout")) {
    // (a)'s load, for comparing builds by their fan-out: in (a) a process's latencies follow its polls
    // per second (how wake-ups happen to coalesce), which differ from process to process by more
    // than 5%. Here polls come at fixed times and messages at random ones, the same for each target
    // of a round, so that every process's messages wait for their poll alike; and they are plain
    // INSERTs, so that what a POST costs (measured in (a) and by bench:api) stays out of it.
    const load = { clients: 1000, channels: 1, rate: 100, seconds }
    const options = { intervalOnly: true, inserts: true, poissonSeed: roundIndex + 1 }
    log(`(fanout) ${load.clients} clients, INSERTs at random times, ${load.rate}/s on average, polls every ${pollIntervalMs} millis only`)
    results.fanout = {
      load,
      pollIntervalMs,
      ...(await perTarget(["pollcast", "pollcast-auth", "compare"], (target) => runOnce(target, load, pollIntervalMs, 3, options)))
    }
  }

  if (scenarios.has("b")) {
    // The service's default interval: what a node holding this many clients would run with.
    const defaultPollIntervalMs = 1000
    const load = { clients: quick ? 5000 : 10_000, channels: 1, rate: 20, seconds }
    log(`(b) ${load.clients} clients on one channel, idle then ${load.rate} messages/s, POLL_INTERVAL ${defaultPollIntervalMs} millis`)
    results.b = {
      load,
      pollIntervalMs: defaultPollIntervalMs,
      ...(await perTarget(againstBaseline, (target) => runOnce(target, load, defaultPollIntervalMs, 10)))
    }
  }

  if (scenarios.has("c")) {
    const load = { clients: 1000, channels: 100, rate: 100, seconds }
    log(`(c) ${load.clients} clients over ${load.channels} channels, ${load.rate} messages/s`)
    results.c = { load, pollIntervalMs, ...(await perTarget(againstBaseline, (target) => runOnce(target, load, pollIntervalMs, 3))) }
  }

  if (scenarios.has("d")) {
    const steps = quick ? [1000, 5000, 10_000] : [1000, 2500, 5000, 10_000, 15_000, 19_000]
    const rate = 20
    // Every client costs a socket write per interval with news: a node meant for many clients
    // polls less often than (a)'s 100 ms.
    const stepPollIntervalMs = 250
    log(`(d) clients per node before p99 passes 1 s, at ${rate} messages/s, POLL_INTERVAL ${stepPollIntervalMs} millis: ${steps.join(", ")}`)
    results.d = {
      rate,
      pollIntervalMs: stepPollIntervalMs,
      ...(await perTarget(withInterval, async (target) => {
        const curve: Array<{ clients: number } & RunResult> = []
        for (const clients of steps) {
          log(`  ${target}: ${clients} clients`)
          const result = await runOnce(target, { clients, channels: 1, rate, seconds: quick ? 5 : 8 }, stepPollIntervalMs, 3)
          curve.push({ clients, ...result })
          if (!(result.delivery.latencyMs.p99 <= 1000 && result.delivery.complete)) break
        }
        const held = curve.filter((step) => step.delivery.latencyMs.p99 <= 1000 && step.delivery.complete)
        return { maxClientsWithinP99OneSecond: held.length === 0 ? 0 : held[held.length - 1]!.clients, curve }
      }))
    }
  }

  if (scenarios.has("e")) {
    const clients = 1000
    const rates = quick ? [100, 400, 1600] : [100, 200, 400, 800, 1600, 3200, 6400]
    log(`(e) saturation with ${clients} clients: ${rates.join(", ")} messages/s until delivery falls behind, then two halvings of the gap`)
    results.e = {
      clients,
      pollIntervalMs,
      ...(await perTarget(allTargets, async (target) => {
        const load = { clients, channels: 1, rate: rates[0]!, seconds: quick ? 4 : 8 }
        const run = await connectClients(target, load, pollIntervalMs, 1)
        const steps: Array<Delivery> = []
        const sustainedAt = (delivery: Delivery) =>
          delivery.complete && delivery.latencyMs.p99 <= 1000 && delivery.publishedRate >= 0.9 * delivery.offeredRate
        const step = async (rate: number) => {
          log(`  ${target}: ${rate} messages/s`)
          await run.generators.reset()
          const delivery = await measureDelivery(run.server, run.generators, run.database.name, { ...load, rate }, pollIntervalMs)
          steps.push(delivery)
          return sustainedAt(delivery)
        }
        try {
          // Doubling the rate until delivery falls behind, then halving the gap between the last rate
          // sustained and the first not, twice: the limit to within a quarter of the last doubling.
          let held: number | undefined
          let failed: number | undefined
          for (const rate of rates) {
            if (await step(rate)) held = rate
            else {
              failed = rate
              break
            }
          }
          for (let i = 0; i < (quick ? 0 : 2) && held !== undefined && failed !== undefined; i++) {
            const rate = Math.round((held + failed) / 2)
            if (await step(rate)) held = rate
            else failed = rate
          }
        } finally {
          await run.stop()
        }
        const sustained = steps.filter(sustainedAt)
        return {
          highestSustainedDeliveriesPerSecond: Math.max(0, ...sustained.map((step) => step.deliveriesPerSecond)),
          steps
        }
      }))
    }
  }

  if (scenarios.has("wakeup")) {
    // (a)'s load at the default interval, where waiting for the poll would cost half a second; then,
    // on the same clients, 2,000 messages/s: how many polls the notifications turn into. Idle for
    // 10 s first: statistics arrive once a second, so a short window cannot tell 1 query/s apart.
    const wakeupPollIntervalMs = 1000
    const load = { clients: 1000, channels: 1, rate: 100, seconds }
    const burstRate = 2000
    log(`(wakeup) ${load.clients} clients, ${load.rate} then ${burstRate} messages/s, POLL_INTERVAL ${wakeupPollIntervalMs} millis`)
    results.wakeup = {
      load,
      burstRate,
      pollIntervalMs: wakeupPollIntervalMs,
      ...(await perTarget(withInterval, async (target) => {
        const run = await connectClients(target, load, wakeupPollIntervalMs, 10)
        try {
          const delivery = await measureDelivery(run.server, run.generators, run.database.name, load, wakeupPollIntervalMs)
          let burst: Delivery | undefined
          if (target !== "baseline") {
            log(`  ${target}: ${burstRate} messages/s`)
            await run.generators.reset()
            burst = await measureDelivery(run.server, run.generators, run.database.name, { ...load, rate: burstRate }, wakeupPollIntervalMs)
          }
          return { connection: run.connection, delivery, burst }
        } finally {
          await run.stop()
        }
      }))
    }
  }

  if (scenarios.has("writers")) {
    // What a node costs the database's other writers, and what it gives them: 8 connections of
    // single-row INSERTs with durable commits into messages while a node serves 1,000 clients,
    // against the same into a copy of the table without pollcast's objects (rounds alternating);
    // for this build, also with the trigger a writer may choose to put back (README, Wake-up).
    // Then delivery at POLL_INTERVAL 1 s of POSTs and of plain INSERTs; then the database's idle
    // load with that node alone and with nine more on the database.
    const load = { clients: 1000, channels: 1, rate: 20, seconds }
    log(`(writers) ${load.clients} clients, POLL_INTERVAL 1000 millis: other writers' INSERTs/s, delivery of POSTs and INSERTs, idle load of 1 and 10 nodes`)
    results.writers = {
      load,
      ...(await perTarget(["pollcast", "compare"], async (target) => {
        const run = await connectClients(target, load, 1000, 3)
        try {
          const inserts = await writerRates(run.database.url, target !== "compare", run.server.pid)
          await run.generators.reset()
          const posts = await measureDelivery(run.server, run.generators, run.database.name, load, 1000)
          await run.generators.reset()
          const plainInserts = await measureDelivery(run.server, run.generators, run.database.name, load, 1000, run.database.url)
          const idle = await idleLoad(target, run.database)
          return { connection: run.connection, inserts, posts, plainInserts, idle }
        } finally {
          await run.stop()
        }
      }))
    }
  }

  if (scenarios.has("polls")) {
    // Other systems' plain INSERTs, one statement and transaction each (no group commit), to few
    // clients (a cheap fan-out): how many polls, and so queries, the notifications turn into.
    const load = { clients: 10, channels: 1, rate: 100, seconds }
    const rates = [100, 2000]
    log(`(polls) ${load.clients} clients, plain INSERTs at ${rates.join(" and ")} per second, POLL_INTERVAL 1000 millis`)
    results.polls = {
      load,
      pollIntervalMs: 1000,
      ...(await perTarget(["pollcast", "interval"], async (target) => {
        const run = await connectClients(target, load, 1000, 1)
        try {
          const steps: Array<Delivery> = []
          for (const rate of rates) {
            await run.generators.reset()
            steps.push(await measureDelivery(run.server, run.generators, run.database.name, { ...load, rate }, 1000, run.database.url))
          }
          return steps
        } finally {
          await run.stop()
        }
      }))
    }
  }

  if (scenarios.has("intervals")) {
    const intervals = quick ? [100, 1000] : [50, 100, 250, 500, 1000, 2000]
    const load = { clients: quick ? 200 : 1000, channels: 1, rate: 100, seconds: quick ? 4 : 8 }
    log(`(intervals) latency against POLL_INTERVAL ${intervals.join(", ")} ms, ${load.clients} clients, ${load.rate} messages/s`)
    const steps: Array<{ pollIntervalMs: number } & Partial<Record<Target, RunResult>>> = []
    for (const interval of intervals) {
      log(`  POLL_INTERVAL ${interval} ms`)
      steps.push({ pollIntervalMs: interval, ...(await perTarget(["pollcast", "interval"], (target) => runOnce(target, load, interval, 1))) })
    }
    results.intervals = { load, steps }
  }
}

/**
 * What each pollcast target ran, so that rounds of different runs can be pooled (--pool) only when
 * they measured the same code: the git tree of src/ and the lock file of the build's checkout, and
 * a hash of any uncommitted change to src/ (as in ../nometrics, which is a patch applied).
 */
const buildOf = (directory: string) => {
  const git = (...args: Array<string>) =>
    ChildProcess.execFileSync("git", ["-C", directory, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  try {
    const changes = git("diff", "HEAD", "--", "src")
    return {
      src: git("rev-parse", "HEAD:src"),
      lockfile: git("rev-parse", "HEAD:package-lock.json"),
      ...(changes === "" ? {} : { uncommitted: Crypto.createHash("sha256").update(changes).digest("hex").slice(0, 16) })
    }
  } catch {
    // Not a git checkout: the run says nothing of its build, and cannot be pooled with another.
    return undefined
  }
}
const builds: Partial<Record<Target, ReturnType<typeof buildOf>>> = {}
for (const target of targets) {
  if (target === "baseline") continue
  builds[target] = buildOf(target === "compare" ? compareDir! : pollcastDir ?? root)
}

/**
 * --pool FILE,...: earlier runs' rounds, for more of them than one sitting allows. A run's figures
 * vary mostly from one server process to the next, so more rounds narrow the intervals, however
 * they were split between runs; the runs must have measured the same builds on the same machine.
 */
const pooled = (argument("pool") ?? "").split(",").filter((name) => name !== "").map((name) => {
  const earlier = JSON.parse(Fs.readFileSync(name, "utf8")) as {
    targets: Array<Target>
    builds?: Partial<Record<Target, ReturnType<typeof buildOf>>>
    machine: { cpu: string; cores: number }
    quick: boolean
    rounds?: Array<Record<string, unknown>>
  }
  if (earlier.rounds === undefined) throw new Error(`${name} has no rounds: it was not run with --repeat`)
  const missing = targets.filter((target) => !earlier.targets.includes(target))
  if (missing.length > 0) throw new Error(`${name} did not run ${missing.join(", ")}`)
  if (earlier.machine.cpu !== machine().cpu || earlier.machine.cores !== machine().cores) {
    throw new Error(`${name} ran on another machine (${earlier.machine.cpu}, ${earlier.machine.cores} cores)`)
  }
  if (earlier.builds === undefined) {
    log(`${name} was written before builds were recorded: pooled on the word of whoever asked for it`)
  } else {
    for (const target of Object.keys(builds) as Array<Target>) {
      const build = builds[target]
      if (build === undefined || JSON.stringify(earlier.builds[target]) !== JSON.stringify(build)) {
        throw new Error(`${name} measured another build of ${target}, or this one is not a git checkout`)
      }
    }
  }
  // The scenarios of this run, from each of its rounds.
  const kept = earlier.rounds.map((each) => Object.fromEntries(Object.entries(each).filter(([scenario]) => scenarios.has(scenario))))
  const absent = [...scenarios].filter((scenario) => kept.some((each) => !(scenario in each)))
  if (absent.length > 0) throw new Error(`${name} did not run ${absent.join(", ")} in every round`)
  const publishedFor = (each: Record<string, unknown>) =>
    ["a", "b", "c", "fanout"].flatMap((scenario) => {
      const entry = each[scenario] as { load: Load } | undefined
      return entry === undefined ? [] : [entry.load.seconds]
    })
  if (earlier.quick !== quick || kept.some((each) => publishedFor(each).some((published) => published !== seconds))) {
    throw new Error(`${name} ran another load (--quick or --seconds)`)
  }
  return { name: Path.relative(root, Path.resolve(name)), rounds: kept }
})
if (pooled.length > 0 && repeat === 1) throw new Error("--pool needs --repeat")

const rounds: Array<Record<string, unknown>> = []
for (roundIndex = 0; roundIndex < repeat; roundIndex++) {
  if (repeat > 1) log(`round ${roundIndex + 1} of ${repeat}`)
  const results: Record<string, unknown> = {}
  await runRound(results)
  rounds.push(results)
}
/** This run's rounds and the pooled ones, for the medians and the intervals. */
const allRounds = [...pooled.flatMap((earlier) => earlier.rounds), ...rounds]

// --- Report ------------------------------------------------------------------------------------

type Value = number | string | undefined
interface Row {
  readonly section: string
  readonly label: string
  readonly values: Partial<Record<Target, Value>>
  /** For the ratio against the baseline; undefined: no ratio. */
  readonly higherIsBetter?: boolean | undefined
  /** A figure of the fan-out itself, compared between auth on and off, and against --compare. */
  readonly fanOut: boolean
}

/** The table's rows for one round's results (a section heading is a row without values). */
const tableOf = (results: Record<string, unknown>): Array<Row> => {
  const rows: Array<Row> = []
  let currentSection = ""
  const row = (label: string, value: (target: Target) => Value, higherIsBetter?: boolean, fanOut = false) => {
    const values: Partial<Record<Target, Value>> = {}
    for (const target of targets) values[target] = value(target)
    rows.push({ section: currentSection, label, values, higherIsBetter, fanOut })
  }
  const section = (title: string) => {
    currentSection = title
    rows.push({ section: title, label: "", values: {}, fanOut: false })
  }
  type Runs = Partial<Record<Target, RunResult>>
  /** A cell per target: `f` of that target's result, where it ran. */
  const of = <A>(results: Partial<Record<Target, A>>, f: (result: A) => Value) => (target: Target) => {
    const result = results[target]
    return result === undefined ? undefined : f(result)
  }
  const deliveryRows = (deliveries: Partial<Record<Target, Delivery>>) => {
    row("latency p50 (ms)", of(deliveries, (d) => d.latencyMs.p50), false, true)
    row("latency p90 (ms)", of(deliveries, (d) => d.latencyMs.p90), false)
    row("latency p99 (ms)", of(deliveries, (d) => d.latencyMs.p99), false, true)
    row("latency max (ms)", of(deliveries, (d) => d.latencyMs.max), false)
    row("  of which POST p50 / p99 (ms)", of(deliveries, (d) => `${d.postMs.p50} / ${d.postMs.p99}`))
    row("published msg/s", of(deliveries, (d) => d.publishedRate), true)
    row("deliveries/s", of(deliveries, (d) => d.deliveriesPerSecond), true, true)
    row("complete (every client, every message, once, one order)", of(deliveries, (d) => String(d.complete)))
    row("server CPU s (delivery phase)", of(deliveries, (d) => d.serverCpuSeconds), false)
    row("  of which the event loop's thread", of(deliveries, (d) => d.serverMainThreadCpuSeconds), false)
    row("DB queries/s while publishing", of(deliveries, (d) => d.databaseQueriesPerSecond))
    row("polls/s while publishing", of(deliveries, (d) => d.pollsPerSecond))
    row("notifications/s while publishing", of(deliveries, (d) => d.notificationsPerSecond))
  }
  const deliveriesOf = (runs: Runs) => {
    const out: Partial<Record<Target, Delivery>> = {}
    for (const target of targets) if (runs[target] !== undefined) out[target] = runs[target].delivery
    return out
  }
  const runRows = (runs: Runs) => {
    row("connect: all clients (s)", of(runs, (r) => r.connection.connectSeconds), false)
    row("connect p99 (ms)", of(runs, (r) => r.connection.connectMs.p99), false)
    deliveryRows(deliveriesOf(runs))
    row("server RSS idle (MB)", of(runs, (r) => r.connection.rssIdleMB), false)
    row("server RSS with clients (MB)", of(runs, (r) => r.connection.rssWithClientsMB), false)
    row("server KB per connection (all / second half)", of(runs, (r) => `${r.connection.kbPerConnection} / ${r.connection.marginalKbPerConnection}`))
    row("server KB per connection, live (after a full GC)", of(runs, (r) => r.connection.liveKbPerConnection), false)
    row("DB queries/s idle, with clients", of(runs, (r) => r.connection.idleQueriesPerSecond))
  }
  for (const key of ["a", "b", "c", "fanout"] as const) {
    const entry = results[key] as (Runs & { load: Load; pollIntervalMs: number }) | undefined
    if (entry === undefined) continue
    section(
      `(${key}) ${entry.load.clients} clients, ${entry.load.channels} channel(s), ${entry.load.rate} msg/s, POLL_INTERVAL ${entry.pollIntervalMs} ms` +
        (key === "fanout" ? " only, INSERTs at random times" : "")
    )
    runRows(entry)
  }
  const wakeup = results.wakeup as
    | (Partial<Record<Target, RunResult & { burst?: Delivery | undefined }>> & { load: Load; burstRate: number; pollIntervalMs: number })
    | undefined
  if (wakeup !== undefined) {
    section(`(wakeup) ${wakeup.load.clients} clients, ${wakeup.load.rate} msg/s, POLL_INTERVAL ${wakeup.pollIntervalMs} ms`)
    runRows(wakeup)
    section(`(wakeup) the same clients, ${wakeup.burstRate} msg/s`)
    const bursts: Partial<Record<Target, Delivery>> = {}
    for (const target of ["pollcast", "interval"] as const) {
      const burst = wakeup[target]?.burst
      if (burst !== undefined) bursts[target] = burst
    }
    deliveryRows(bursts)
  }
  const d = results.d as Partial<Record<Target, { maxClientsWithinP99OneSecond: number; curve: Array<{ clients: number } & RunResult> }>> | undefined
  if (d !== undefined) {
    section("(d) clients one node holds with p99 ≤ 1 s")
    row("clients (largest step held)", of(d, (curve) => curve.maxClientsWithinP99OneSecond), true)
    row("p99 at largest step (ms)", of(d, (curve) => curve.curve[curve.curve.length - 1]?.delivery.latencyMs.p99), false)
  }
  const e = results.e as Partial<Record<Target, { highestSustainedDeliveriesPerSecond: number; steps: Array<Delivery> }>> | undefined
  if (e !== undefined) {
    section("(e) saturation, 1000 clients")
    row("highest sustained deliveries/s", of(e, (run) => run.highestSustainedDeliveriesPerSecond), true, true)
    row("polls/s at the highest rate sustained", of(e, (run) =>
      run.steps.find((step) => step.deliveriesPerSecond === run.highestSustainedDeliveriesPerSecond)?.pollsPerSecond))
  }
  const writers = results.writers as
    | (Partial<Record<Target, { connection: Connection; inserts: WriterRates; posts: Delivery; plainInserts: Delivery; idle: Array<IdleLoad> }>> & {
      load: Load
    })
    | undefined
  if (writers !== undefined) {
    section("(writers) other writers: 8 connections of single-row INSERTs, durable commits, a node with 1000 clients running")
    row("INSERTs/s into messages (median of 3)", of(writers, (run) => round(middleOf(run.inserts.messages), 0)), true)
    row("INSERTs/s into a copy without pollcast's objects", of(writers, (run) => round(middleOf(run.inserts.copy), 0)), true)
    row("  ratio (target ≥ 0.95)", of(writers, (run) => run.inserts.ratio), true)
    row("  the node's CPU meanwhile, % of a core (messages / copy)", of(writers, (run) =>
      run.inserts.nodeCpuPercent === undefined ? undefined : `${run.inserts.nodeCpuPercent.messages} / ${run.inserts.nodeCpuPercent.copy}`))
    row("INSERTs/s into messages with the opt-in trigger", of(writers, (run) => run.inserts.withTrigger === undefined ? undefined : round(run.inserts.withTrigger, 0)), true)
    section(`(writers) delivery to ${writers.load.clients} clients, ${writers.load.rate} msg/s, POLL_INTERVAL 1000 ms`)
    row("POSTs: latency p50 / p99 (ms)", of(writers, (run) => `${run.posts.latencyMs.p50} / ${run.posts.latencyMs.p99}`))
    row("POSTs: complete", of(writers, (run) => String(run.posts.complete)))
    row("plain INSERTs: latency p50 / p99 (ms, target p99 ≤ 100)", of(writers, (run) => `${run.plainInserts.latencyMs.p50} / ${run.plainInserts.latencyMs.p99}`))
    row("plain INSERTs: complete", of(writers, (run) => String(run.plainInserts.complete)))
    section("(writers) the database idle: the node alone, then with nine more")
    for (const index of [0, 1]) {
      const nodes = index === 0 ? 1 : 10
      row(`${nodes} node(s): queries/s`, of(writers, (run) => run.idle[index]?.queriesPerSecond), false)
      row(`${nodes} node(s): PostgreSQL CPU (% of a core)`, of(writers, (run) => run.idle[index]?.databaseCpuPercent), false)
    }
  }
  const polls = results.polls as (Partial<Record<Target, Array<Delivery>>> & { load: Load }) | undefined
  if (polls !== undefined) {
    for (const [index, rate] of [100, 2000].entries()) {
      section(`(polls) ${polls.load.clients} clients, plain INSERTs at ${rate}/s, POLL_INTERVAL 1000 ms`)
      const cell = (f: (delivery: Delivery) => Value) => (target: Target) => {
        const delivery = polls[target]?.[index]
        return delivery === undefined ? undefined : f(delivery)
      }
      row("inserts/s achieved", cell((step) => step.publishedRate))
      row("polls/s", cell((step) => step.pollsPerSecond))
      row("notifications/s", cell((step) => step.notificationsPerSecond))
      row("DB queries/s (inserts included)", cell((step) => step.databaseQueriesPerSecond))
      row("latency p50 / p99 (ms)", cell((step) => `${step.latencyMs.p50} / ${step.latencyMs.p99}`))
      row("complete", cell((step) => String(step.complete)))
    }
  }
  const intervalSweep = results.intervals as { steps: Array<{ pollIntervalMs: number } & Runs> } | undefined
  if (intervalSweep !== undefined) {
    section("(intervals) latency p50 / p99 (ms) against POLL_INTERVAL")
    for (const step of intervalSweep.steps) {
      row(`POLL_INTERVAL ${step.pollIntervalMs} ms`, of(step as Runs, (r) => `${r.delivery.latencyMs.p50} / ${r.delivery.latencyMs.p99}`))
    }
  }
  return rows
}

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
/**
 * One cell from the rounds' cells: the median of numbers (of each part of "p50 / p99"), "true"
 * only if every round was complete.
 */
const medianCell = (cells: ReadonlyArray<Value>): Value => {
  const present = cells.filter((cell) => cell !== undefined)
  if (present.length === 0) return undefined
  if (present.every((cell) => typeof cell === "number")) return round1(median(present as Array<number>))
  const texts = present.map(String)
  if (texts.every((text) => text === "true" || text === "false")) {
    const complete = texts.filter((text) => text === "true").length
    return complete === texts.length ? "true" : `${complete} of ${texts.length} rounds`
  }
  const parts = texts.map((text) => text.split(" / ").map(Number))
  if (parts.every((part) => part.length === parts[0]!.length && part.every(Number.isFinite))) {
    return parts[0]!.map((_, i) => round1(median(parts.map((part) => part[i]!)))).join(" / ")
  }
  return texts[0]
}
const round1 = (value: number) => (Math.abs(value) >= 1000 ? Math.round(value) : round(value))
const rowKey = (row: Row) => `${row.section}|${row.label}`
const roundTables = allRounds.map(tableOf)
const table: Array<Row> = roundTables[0]!.map((first) => {
  const same = roundTables.map((rows) => rows.find((row) => rowKey(row) === rowKey(first)))
  const values: Partial<Record<Target, Value>> = {}
  for (const target of targets) values[target] = medianCell(same.map((row) => row?.values[target]))
  return { ...first, values }
})

const output = {
  machine: { ...machine(), postgres: postgresVersion, synchronousCommit },
  targets,
  at: new Date().toISOString(),
  quick,
  repeat,
  builds,
  /** The first round's results (all of them in `rounds` with --repeat); `table` holds the medians. */
  results: rounds[0]!,
  /** `table` holds the medians of this run's rounds and those of the runs in `pooled`. */
  ...(repeat > 1 ? { rounds, pooled: pooled.map((earlier) => earlier.name), table } : {})
}
Fs.mkdirSync(Path.join(root, "bench-results"), { recursive: true })
const file = Path.join(root, "bench-results", `bench-${output.at.replace(/[:.]/g, "-")}.json`)
Fs.writeFileSync(file, JSON.stringify(output, null, 2))
if (output.results.d !== undefined) writeChart(Path.join(root, "docs", "bench-chart.svg"), output)
if (output.results.intervals !== undefined) writeIntervalChart(Path.join(root, "docs", "bench-wakeup-chart.svg"), output)

// Columns: each target that ran; then auth on against off, and pollcast against the baseline.
const compareAuth = targets.includes("pollcast") && targets.includes("pollcast-auth")
const compareOther = targets.includes("pollcast") && targets.includes("compare")
const compareBaseline = targets.includes("pollcast") && targets.includes("baseline")
const percentChange = (from: Value, to: Value) =>
  typeof from === "number" && typeof to === "number" && from > 0 ? `${to >= from ? "+" : ""}${round(((to - from) / from) * 100)}%` : ""

/** `to` against `from` (in %), for each fan-out figure where both ran. */
const fanOutChanges = (rows: ReadonlyArray<Row>, from: Target, to: Target) =>
  rows.flatMap((row) => {
    const a = row.values[from]
    const b = row.values[to]
    return row.fanOut && typeof a === "number" && typeof b === "number" && a > 0
      ? [{ figure: `${row.section.split(" ")[0]} ${row.label}`, change: ((b - a) / a) * 100 }]
      : []
  })

const lines = table.map((row) => {
  if (row.label === "") {
    return [`— ${row.section}`, ...targets.map(() => ""), ...(compareAuth ? [""] : []), ...(compareOther ? [""] : []), ...(compareBaseline ? [""] : [])]
  }
  const p = row.values.pollcast
  const b = row.values.baseline
  const ratio = typeof p === "number" && typeof b === "number" && p > 0 && b > 0 && row.higherIsBetter !== undefined
    ? row.higherIsBetter ? `${round(p / b, 2)}×` : `${round(b / p, 2)}×`
    : ""
  return [
    row.label,
    ...targets.map((target) => String(row.values[target] ?? "–")),
    ...(compareAuth ? [percentChange(p, row.values["pollcast-auth"])] : []),
    // This checkout against the other: + means this one is higher.
    ...(compareOther ? [percentChange(row.values.compare, p)] : []),
    ...(compareBaseline ? [ratio] : [])
  ]
})
const headings = [
  repeat > 1 ? `medians of ${allRounds.length} rounds` : "",
  ...targets.map((target) => targetNames[target]),
  ...(compareAuth ? ["auth on vs off"] : []),
  ...(compareOther ? ["pollcast vs compare"] : []),
  ...(compareBaseline ? ["pollcast vs baseline"] : [])
]
const widths = headings.map((heading, column) => Math.max(heading.length, ...lines.map((line) => line[column]!.length), 8))
console.log(headings.map((cell, i) => cell.padEnd(widths[i]!)).join("  "))
for (const line of lines) console.log(line.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "))

/**
 * A distribution-free 95% confidence interval for the median of `values` (the sign test's: the
 * k-th smallest and k-th largest, for the largest k with P(Binomial(n, ½) < k) ≤ 2.5%), or
 * undefined with fewer than 6 values, where no such k exists.
 */
const medianInterval = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const n = sorted.length
  let probability = 0.5 ** n // P(X = 0)
  let below = 0 // P(X < k)
  let k = 0
  while (below + probability <= 0.025) {
    below += probability
    probability *= (n - k) / (k + 1)
    k += 1
  }
  return k === 0 ? undefined : { low: sorted[k - 1]!, high: sorted[n - k]!, coverage: 1 - 2 * below }
}
const signed = (value: number) => `${value >= 0 ? "+" : ""}${round(value)}%`

/**
 * The largest difference in the fan-out figures (of the medians). With --repeat, each round's
 * difference (the targets ran back to back, so a round's pair shares the machine's state), their
 * median and its 95% interval: the difference is shown within 5% only when that whole interval is.
 */
const largestChange = (what: string, from: Target, to: Target) => {
  const changes = fanOutChanges(table, from, to)
  if (changes.length === 0) return
  const largest = changes.reduce((worst, change) => (Math.abs(change.change) > Math.abs(worst.change) ? change : worst))
  console.log(
    `\n${what}, fan-out (deliveries/s, latency p50 and p99${repeat > 1 ? ", medians" : ""}): largest difference ` +
      `${round(largest.change)}% (${largest.figure}); ${changes.every((change) => Math.abs(change.change) <= 5) ? "all" : "not all"} within 5%`
  )
  if (repeat === 1) return
  const shown: Array<boolean> = []
  for (const change of changes) {
    const perRound = roundTables.flatMap((rows) => fanOutChanges(rows, from, to).filter((each) => each.figure === change.figure).map((each) => each.change))
    const interval = medianInterval(perRound)
    shown.push(interval !== undefined && interval.low >= -5 && interval.high <= 5)
    console.log(
      `  ${change.figure}: median of the medians ${signed(change.change)}; of the rounds' differences ${signed(median(perRound))}` +
        (interval === undefined
          ? " (an interval needs 6 rounds or more)"
          : `, ${round(interval.coverage * 100)}% interval ${signed(interval.low)} to ${signed(interval.high)}`) +
        `; rounds ${perRound.map(signed).join(", ")}`
    )
  }
  console.log(`  within 5% with 95% confidence: ${shown.filter(Boolean).length} of ${shown.length} figures`)
}
if (compareAuth) largestChange("auth on vs off", "pollcast", "pollcast-auth")
if (compareOther) largestChange(`pollcast vs ${targetNames.compare}`, "compare", "pollcast")
console.log(
  `\nmachine: ${output.machine.cpu}, ${output.machine.cores} cores, ${output.machine.memoryGiB} GiB, Node ${output.machine.node}, PostgreSQL ${postgresVersion} (synchronous_commit=${synchronousCommit}); load generator on the same machine`
)
console.log(`results: ${Path.relative(root, file)}`)

await admin.end()
await Effect.runPromise(Scope.close(scope, Exit.void))
