/**
 * One measurement of a target: a server on a fresh database, clients connected in two halves
 * (connection cost and memory), then a load published and waited for until every probe client
 * has it all (delivery latency, throughput, CPU, database queries), and every client's stream
 * checked: every message, once, in one order. A server's CPU and memory are those of all its
 * processes (a node's primary and workers; serverProcesses.ts).
 */
import { cpuSeconds } from "../support/processStats.js"
import type { BenchDatabase } from "./database.js"
import { Generators } from "./generators.js"
import type { Target } from "./options.js"
import { publish, type Published } from "./publisher.js"
import { cpuOf, memory, metricSums, rssOf } from "./serverProcesses.js"
import { percentile, round } from "./statistics.js"
import type { BenchServer, RunOptions, StartTarget } from "./targets.js"

/** What a measurement uses: the database server, and a way to start the targets on it. */
export interface Bench {
  readonly database: BenchDatabase
  readonly startTarget: StartTarget
}

export const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))
export const now = () => performance.timeOrigin + performance.now()

export interface Load {
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

export interface Delivery {
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

export interface PollerStats {
  readonly polls: number
  readonly notifications: number
}

/**
 * pollcast's poll and notification counts: pollcast_polls_total and pollcast_wakeups_total, each
 * summed over the node's processes, or where /metrics has no such series, /stats; undefined for
 * the baseline, which has neither.
 */
export const pollerStats = async (server: BenchServer): Promise<PollerStats | undefined> => {
  const metrics = await metricSums(server.url, server.headers, ["pollcast_polls_total", "pollcast_wakeups_total"])
  const polls = metrics?.get("pollcast_polls_total")
  if (polls !== undefined) return { polls, notifications: metrics?.get("pollcast_wakeups_total") ?? 0 }
  const response = await fetch(new URL("/stats", server.url), { headers: server.headers }).catch(() => undefined)
  if (response?.ok !== true) return undefined
  const stats = (await response.json()) as { polls?: unknown; wakeup?: { notifications?: unknown } }
  return typeof stats.polls === "number" && typeof stats.wakeup?.notifications === "number"
    ? { polls: stats.polls, notifications: stats.wakeup.notifications }
    : undefined
}

/**
 * Publishes `load` (through POST, or with `insertInto` as plain SQL INSERTs into that database)
 * and waits for the probes to have it all; then checks what every client got.
 */
export const measureDelivery = async (
  bench: Bench,
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
  const processes = await server.processes()
  const cpuBefore = cpuOf(processes)
  const mainThreadCpuBefore = cpuOf(processes, true)
  const generatorCpuBefore = generators.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)
  const transactionsBefore = await bench.database.transactions(database)
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
  const serverCpuSeconds = cpuOf(processes) - cpuBefore
  const serverMainThreadCpuSeconds = cpuOf(processes, true) - mainThreadCpuBefore
  const generatorCpuSeconds = generators.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - generatorCpuBefore
  const elapsed = (now() - published.firstAt) / 1000
  const statsAfter = await pollerStats(server)
  await sleep(1100) // statistics reach pg_stat_database at most once a second
  const databaseQueriesPerSecond = ((await bench.database.transactions(database)) - transactionsBefore - 1) / (elapsed + 1.1)

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
      : round((statsAfter.notifications - statsBefore.notifications) / elapsed),
    rssAfterMB: round(rssOf(processes) / 1024 / 1024)
  }
}

export interface Connection {
  readonly clients: number
  /** The server's processes, over which memory and CPU are summed (a node's primary and workers). */
  readonly processes?: number | undefined
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

/** Starts a server on a fresh database, connects the clients, and measures the idle state. */
export const connectClients = async (bench: Bench, target: Target, load: Load, pollIntervalMs: number, idleSeconds: number, options: RunOptions = {}) => {
  const database = await bench.database.fresh()
  const server = await bench.startTarget(target, database.url, pollIntervalMs, options)
  await sleep(2000)
  const processes = await server.processes()
  const idle = await memory(processes)
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
  const halfway = await memory(processes)
  const rssHalf = halfway.raw
  const resumedAt = now()
  await generators.connect(server, paths.slice(half))
  const connectSeconds = (halfConnectedAt - started + now() - resumedAt) / 1000
  const report = await generators.report()
  const idleBefore = await bench.database.transactions(database.name)
  await sleep(idleSeconds * 1000)
  const idleQueriesPerSecond = ((await bench.database.transactions(database.name)) - idleBefore - 1) / idleSeconds
  const withClients = await memory(processes)
  const rssWithClients = withClients.raw
  const connection: Connection = {
    clients: report.connected,
    processes: processes.length,
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
      await server.stop()
      await bench.database.drop(database.name)
    }
  }
}

export interface RunResult {
  readonly connection: Connection
  readonly delivery: Delivery
}

export const runOnce = async (
  bench: Bench,
  target: Target,
  load: Load,
  pollIntervalMs: number,
  idleSeconds: number,
  options: RunOptions = {}
): Promise<RunResult> => {
  const run = await connectClients(bench, target, load, pollIntervalMs, idleSeconds, options)
  try {
    const delivery = await measureDelivery(
      bench,
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
