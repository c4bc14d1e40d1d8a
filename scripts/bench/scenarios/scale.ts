/**
 * `scale` (run only when named): as many concurrent subscribers as --subscribers asks (100,000 by
 * default) on one channel of one node, then --broadcasts messages (10 by default, one a second)
 * to them all. The node runs with MAX_STREAMS at the number asked (its default WORKERS then gives
 * it the workers that many streams need; --workers sets them instead), no cap per client, and the
 * default POLL_INTERVAL. The subscribers are held by load generators of at most
 * --clients-per-generator streams each, each from a source address of its own (generators.ts).
 *
 * Every subscriber parses what it receives, so that it received every broadcast, once, is checked
 * client by client, and the latency (POST sent to event received) counts every delivery. Memory
 * per connection is over all the node's processes. Where fewer streams open than asked, it says
 * how many were open when failures began and why each client failed (the answer's status, the
 * socket's error, or no answer), with the node's warnings.
 */
import { cpuSeconds } from "../../support/processStats.js"
import { Generators, type MergedTally } from "../generators.js"
import { now, sleep } from "../measure.js"
import { Effect, Option } from "effect"
import * as Os from "node:os"
import * as Sizing from "../../../src/Cluster/Sizing.js"
import { type Target, workersOf } from "../options.js"
import { publish } from "../publisher.js"
import type { Round, Scenario } from "../scenario.js"
import { cpuOf, heapUsedOf, memory, metricSums, rssOf, type ServerProcess } from "../serverProcesses.js"
import { round } from "../statistics.js"

const channel = "scale"

/** The WORKERS a node takes by default for `maxStreams` on this machine (src/Cluster/Sizing.ts). */
const defaultWorkers = (maxStreams: number) =>
  Effect.runPromise(Effect.map(Sizing.openFileLimit, (openFiles) =>
    Sizing.planFor(Option.none(), Os.availableParallelism(), maxStreams, openFiles).workers))
/** The service's default: what a node holding this many streams would run with. */
const defaultPollIntervalMs = 1000
const broadcastsPerSecond = 1
/** Connections being opened at once, over all generators: within the server's accept backlog (511). */
const inFlight = 512
/** A client without an answer this long counts as failed. */
const answerTimeoutMs = 30_000
/** How long delivery may make no progress before the broadcasts are given up on. */
const patienceMs = 15_000

export interface Shortfall {
  /**
   * Streams open, and seconds into connecting, when the first client failed (the generator that
   * saw it tells at once; the others' counts may be up to a second old).
   */
  readonly failuresBegan?: { readonly opened: number; readonly seconds: number } | undefined
  /** Clients that got no stream, by why: `status 503`, `error EMFILE`, `error EADDRNOTAVAIL`, `no answer in 30 s`, ... */
  readonly failures: Record<string, number>
  /** The node's first warnings and errors. */
  readonly serverLog: ReadonlyArray<string>
}

export interface ScaleRun {
  readonly asked: number
  /** Streams open on the clients' side once all had been tried. */
  readonly held: number
  /** pollcast_event_streams_open summed over the node's processes, at the same time. */
  readonly serverStreams: number | undefined
  readonly generators: number
  /** The node's processes, with their RSS holding the streams. */
  readonly processes: ReadonlyArray<ServerProcess & { readonly rssMB: number }>
  readonly connect: {
    readonly seconds: number
    readonly perSecond: number
    readonly ms: { readonly p50: number; readonly p99: number; readonly max: number }
  }
  readonly shortfall?: Shortfall | undefined
  readonly memory: {
    readonly rssBeforeMB: number
    readonly rssWithStreamsMB: number
    /** (RSS with the streams − RSS before) / streams held, over every process of the node. */
    readonly kbPerConnection: number
    /** The same with RSS measured after a full garbage collection in each process. */
    readonly liveKbPerConnection: number
    /** The JavaScript heap in use after a full GC, over the processes, per stream (from /stats). */
    readonly heapKbPerConnection: number | undefined
    /** The same over the second half of the streams alone (what each more stream costs, past the start-up growth). */
    readonly secondHalfKbPerConnection: number | undefined
    /** The processes that ran that collection (those that handle SIGUSR2), of all. */
    readonly collected: number
  }
  readonly delivery: {
    readonly broadcasts: number
    readonly failedPosts: number
    /** Every subscriber held received every broadcast, once, and the same bytes. */
    readonly complete: boolean
    readonly subscribersComplete: number
    readonly problems: ReadonlyArray<string>
    readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number }
    readonly deliveries: number
    /** CPU of all the node's processes from the first broadcast to the last delivery. */
    readonly serverCpuSeconds: number
    /** CPU the load generators took meanwhile, on the same cores (each parses every event it gets). */
    readonly generatorCpuSeconds: number
  }
}

const text = (counts: Record<string, number>) =>
  Object.entries(counts).sort(([, a], [, b]) => b - a).map(([why, count]) => `${why} ×${count}`).join(", ")

/** Lines of the node's output that warn or fail, first five, shortened (not the warning that access control is off: the bench turns it off). */
const warnings = (output: string) =>
  [
    ...new Set(
      output.split("\n").filter((line) =>
        /level=(warn|error|fatal)|"level":"(warn|error|fatal)|EMFILE|ENFILE|EADDRNOTAVAIL/i.test(line) && !line.includes("ACCESS CONTROL IS OFF")
      )
    )
  ].slice(0, 5).map((line) => line.slice(0, 300))

/** Asks the generators until every open subscriber has `expected`, or delivery stalls for `patienceMs`. */
const awaitDelivery = async (generators: Generators, expected: Record<string, { count: number; sequenceSum: number }>) => {
  let tally = await generators.tally(expected)
  let progressAt = now()
  let previous = tally.probeMessages
  while (tally.missing > 0 && now() - progressAt < patienceMs) {
    await sleep(1000)
    tally = await generators.tally(expected)
    if (tally.probeMessages !== previous) {
      previous = tally.probeMessages
      progressAt = now()
    }
  }
  return tally
}

const problemsOf = (tally: MergedTally, broadcasts: number) => {
  const problems: Array<string> = []
  if (tally.disconnected > 0) problems.push(`${tally.disconnected} subscribers disconnected`)
  if (tally.missing > 0) problems.push(`${tally.missing} subscribers missed some of the ${broadcasts} broadcasts`)
  if (tally.duplicated > 0) problems.push(`${tally.duplicated} subscribers received a broadcast twice`)
  if (tally.wrong > 0) problems.push(`${tally.wrong} subscribers received other messages than those broadcast`)
  const streams = tally.streams[channel]?.length ?? 0
  if (streams > 1) problems.push(`the subscribers received ${streams} different streams`)
  return problems
}

const scaleRun = async (bench: Round, target: Target): Promise<ScaleRun> => {
  const { broadcasts, clientsPerGenerator, subscribers } = bench.scale
  const database = await bench.database.fresh()
  const maxStreams = Math.min(1_000_000, subscribers)
  // The node's own default for that many streams on this machine, unless --workers names a count.
  const workers = workersOf(target) ?? await defaultWorkers(maxStreams)
  const server = await bench.startTarget(target, database.url, defaultPollIntervalMs, {
    env: { MAX_STREAMS: String(maxStreams), MAX_STREAMS_PER_CLIENT: "0", MAX_CONNECTIONS_PER_CLIENT: "0", WORKERS: String(workers) }
  })
  const generators = Generators.start(subscribers, clientsPerGenerator)
  try {
    await sleep(2000)
    const before = await memory(await server.processes())
    const heapBefore = await heapUsedOf(server.url, server.headers)
    bench.log(`  ${target}: ${before.processes.length} process(es), ${round(before.raw / 1024 / 1024)} MB; ${subscribers} subscribers from ${generators.pids.length} generator(s)`)

    const paths = Array.from({ length: subscribers }, () => ({ path: `/events?channel=${channel}`, group: channel, probe: true }))
    let failuresBegan: Shortfall["failuresBegan"]
    let loggedAt = 0
    // Memory when half the streams are open, for what the second half costs.
    let half: Promise<{ readonly opened: number; readonly rss: number }> | undefined
    const started = now()
    await generators.connect(server, paths, {
      concurrency: Math.max(1, Math.min(256, Math.floor(inFlight / generators.pids.length))),
      timeoutMs: answerTimeoutMs,
      onProgress: ({ failed, opened }) => {
        if (failed > 0 && failuresBegan === undefined) failuresBegan = { opened, seconds: round((now() - started) / 1000) }
        if (half === undefined && opened >= subscribers / 2) {
          half = server.processes().then((processes) => ({ opened, rss: rssOf(processes) }))
        }
        if (now() - loggedAt >= 10_000) {
          loggedAt = now()
          bench.log(`  ${target}: ${opened} streams open, ${failed} failed`)
        }
      }
    })
    const connectSeconds = (now() - started) / 1000
    const connected = await generators.tally({})
    const serverStreams = (await metricSums(server.url, server.headers, ["pollcast_event_streams_open"]))?.get("pollcast_event_streams_open")
    const held = connected.connected
    const shortfall: Shortfall | undefined = held < subscribers
      ? { failuresBegan, failures: connected.failures, serverLog: warnings(server.output()) }
      : undefined
    bench.log(
      `  ${target}: ${held} of ${subscribers} streams held in ${round(connectSeconds)} s (${Math.round(held / connectSeconds)}/s)` +
        (serverStreams === undefined ? "" : `; the node counts ${serverStreams}`)
    )
    if (shortfall !== undefined) {
      bench.log(
        `  ${target}: stopped short` +
          (failuresBegan === undefined ? "" : `: failures began with about ${failuresBegan.opened} streams open, ${failuresBegan.seconds} s in`) +
          `; ${text(shortfall.failures) || "no client failed: streams closed after opening"}`
      )
      for (const line of shortfall.serverLog) bench.log(`    node: ${line}`)
    }

    await sleep(2000)
    const processes = await server.processes()
    const withStreams = await memory(processes)
    const halfway = await half
    const heapWith = await heapUsedOf(server.url, server.headers)
    const perStream = (bytes: number) => round(bytes / 1024 / Math.max(1, held), 2)

    // Two broadcasts first (JIT, the pools), then the ones measured, on the same streams.
    const warmUp = await publish({ url: server.url, headers: server.headers, rate: broadcastsPerSecond, seconds: 2, channelOf: () => channel })
    await awaitDelivery(generators, { [channel]: warmUp.byChannel.get(channel) ?? { count: 0, sequenceSum: 0 } })
    await generators.reset()
    const cpuBefore = cpuOf(processes)
    const generatorCpu = () => generators.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)
    const generatorCpuBefore = generatorCpu()
    const published = await publish({
      url: server.url,
      headers: server.headers,
      rate: broadcastsPerSecond,
      seconds: broadcasts / broadcastsPerSecond,
      channelOf: () => channel
    })
    const tally = await awaitDelivery(generators, { [channel]: published.byChannel.get(channel) ?? { count: 0, sequenceSum: 0 } })
    const serverCpuSeconds = cpuOf(processes) - cpuBefore
    const generatorCpuSeconds = generatorCpu() - generatorCpuBefore
    const problems = problemsOf(tally, published.accepted)
    if (published.failed > 0) problems.push(`${published.failed} broadcasts refused`)
    const run: ScaleRun = {
      asked: subscribers,
      held,
      serverStreams,
      generators: generators.pids.length,
      processes: withStreams.processes,
      connect: {
        seconds: round(connectSeconds, 2),
        perSecond: Math.round(held / connectSeconds),
        ms: {
          p50: round(connected.connectLatency.percentile(0.5)),
          p99: round(connected.connectLatency.percentile(0.99)),
          max: round(connected.connectLatency.max / 1000)
        }
      },
      shortfall,
      memory: {
        rssBeforeMB: round(before.raw / 1024 / 1024),
        rssWithStreamsMB: round(withStreams.raw / 1024 / 1024),
        kbPerConnection: perStream(withStreams.raw - before.raw),
        liveKbPerConnection: perStream(withStreams.live - before.live),
        heapKbPerConnection: heapBefore === undefined || heapWith === undefined ? undefined : perStream(heapWith - heapBefore),
        secondHalfKbPerConnection: halfway === undefined || held <= halfway.opened
          ? undefined
          : round((withStreams.raw - halfway.rss) / 1024 / (held - halfway.opened), 2),
        collected: withStreams.collected
      },
      delivery: {
        broadcasts: published.accepted,
        failedPosts: published.failed,
        complete: problems.length === 0 && tally.complete === held,
        subscribersComplete: tally.complete,
        problems,
        latencyMs: {
          p50: round(tally.latency.percentile(0.5)),
          p99: round(tally.latency.percentile(0.99)),
          max: round(tally.latency.max / 1000)
        },
        deliveries: tally.probeMessages,
        serverCpuSeconds: round(serverCpuSeconds, 2),
        generatorCpuSeconds: round(generatorCpuSeconds, 2)
      }
    }
    bench.log(
      `  ${target}: ${run.delivery.subscribersComplete} of ${held} subscribers received all ${published.accepted} broadcasts` +
        `; latency p50 / p99 / max ${run.delivery.latencyMs.p50} / ${run.delivery.latencyMs.p99} / ${run.delivery.latencyMs.max} ms` +
        `; ${run.memory.kbPerConnection} KB per stream (${run.memory.liveKbPerConnection} live) over ${processes.length} process(es)` +
        (problems.length === 0 ? "" : `; ${problems.join("; ")}`)
    )
    return run
  } finally {
    generators.close()
    await server.stop()
    await bench.database.drop(database.name)
  }
}

export const scale: Scenario = {
  name: "scale",
  run: async (bench) => {
    const { broadcasts, clientsPerGenerator, subscribers } = bench.scale
    bench.log(
      `(scale) ${subscribers} subscribers on one channel, ${broadcasts} broadcasts at ${broadcastsPerSecond}/s, ` +
        `POLL_INTERVAL ${defaultPollIntervalMs} millis, at most ${clientsPerGenerator} streams per generator`
    )
    return {
      subscribers,
      broadcasts,
      clientsPerGenerator,
      ...(await bench.perTarget(["pollcast"], (target) => scaleRun(bench, target)))
    }
  }
}
