/**
 * The load generators: child processes (clients.ts) holding the bench's SSE clients, asked over
 * IPC to connect, report what their clients received, and start afresh. Each holds at most
 * `clientsPerGenerator` clients (10,000 unless told; never more than 16,000, well under the 20,000
 * open files a process may have) and connects from a source address of its own: 127.0.0.2,
 * 127.0.0.3, … taken in turn over the run (an address has about 28,000 ephemeral ports, and a new
 * set of generators does not meet the connections of the one before still in TIME_WAIT). So the
 * bench can hold 100,000 streams and more from one machine.
 */
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { root } from "../support/ServiceProcess.js"
import type { Command, Expected, Progress, Report, Tally } from "./clients.js"
import { Histogram } from "./statistics.js"
import type { BenchServer } from "./targets.js"

/** The most clients one generator holds: well under the 20,000 open files a process may have. */
export const maxClientsPerGenerator = 16_000

/** Source addresses 127.0.0.2 to 127.0.0.251, one per generator, in turn. */
const sourceAddresses = 250
let nextAddress = 0

export interface ConnectOptions {
  /** Connections each generator opens at a time (256 unless told). */
  readonly concurrency?: number
  /** A client without an answer this long gives up, counted as a failure (default: it waits). */
  readonly timeoutMs?: number
  /** Called about once a second while connecting, with the streams opened and the clients failed so far. */
  readonly onProgress?: (progress: { readonly opened: number; readonly failed: number }) => void
}

/** A tally of every generator's clients (see clients.ts). */
export interface MergedTally extends Omit<Tally, "type" | "latency" | "connectLatency"> {
  readonly latency: Histogram
  readonly connectLatency: Histogram
}

export class Generators {
  private constructor(private readonly children: ReadonlyArray<{ readonly child: ChildProcess.ChildProcess; readonly address: string }>) {}

  static start(clients: number, clientsPerGenerator = 10_000) {
    if (clientsPerGenerator > maxClientsPerGenerator) throw new Error(`A generator holds at most ${maxClientsPerGenerator} clients`)
    const count = Math.max(1, Math.ceil(clients / clientsPerGenerator))
    if (count > sourceAddresses) throw new Error(`${clients} clients need more than ${sourceAddresses} generators`)
    return new Generators(Array.from({ length: count }, () => {
      const address = `127.0.0.${2 + nextAddress}`
      nextAddress = (nextAddress + 1) % sourceAddresses
      const child = ChildProcess.fork(Path.join(root, "scripts/bench/clients.ts"), [], {
        execArgv: ["--import", "tsx"],
        stdio: ["ignore", "inherit", "inherit", "ipc"]
      })
      return { child, address }
    }))
  }

  get pids() {
    return this.children.map(({ child }) => child.pid!)
  }

  /** Sends `command` and waits for the answer of type `answer`; fails if the generator exits first. */
  private ask<A>(child: ChildProcess.ChildProcess, command: Command, answer: string) {
    return new Promise<A>((resolve, reject) => {
      const listener = (message: { type: string }) => {
        if (message.type === answer) {
          child.off("message", listener)
          child.off("exit", exited)
          resolve(message as A)
        }
      }
      const exited = (code: number | null, signal: NodeJS.Signals | null) => {
        child.off("message", listener)
        reject(new Error(`A load generator exited (${signal ?? `code ${code}`}) before it answered ${command.type}`))
      }
      child.on("message", listener)
      child.once("exit", exited)
      child.send(command)
    })
  }

  async connect(
    server: BenchServer,
    paths: ReadonlyArray<{ path: string; group: string; probe: boolean }>,
    options: ConnectOptions = {}
  ) {
    const { hostname, port } = new URL(server.url)
    const progress = this.children.map(() => ({ opened: 0, failed: 0 }))
    const listeners = this.children.map(({ child }, index) => {
      const listener = (message: Progress | { type: string }) => {
        if (message.type !== "progress" || options.onProgress === undefined) return
        progress[index] = message as Progress
        options.onProgress({
          opened: progress.reduce((sum, each) => sum + each.opened, 0),
          failed: progress.reduce((sum, each) => sum + each.failed, 0)
        })
      }
      child.on("message", listener)
      return listener
    })
    try {
      await Promise.all(this.children.map(({ address, child }, index) =>
        this.ask(child, {
          type: "connect",
          host: hostname,
          port: Number(port),
          headers: server.headers,
          localAddress: address,
          clients: paths.filter((_, i) => i % this.children.length === index),
          concurrency: options.concurrency ?? 256,
          timeoutMs: options.timeoutMs,
          progressEveryMs: options.onProgress === undefined ? undefined : 1000
        }, "connected")
      ))
    } finally {
      this.children.forEach(({ child }, index) => child.off("message", listeners[index]!))
    }
  }

  async report() {
    const reports = await Promise.all(this.children.map(({ child }) => this.ask<Report>(child, { type: "report" }, "report")))
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
      probeMessages: reports.reduce((sum, report) => sum + report.probeMessages, 0),
      failures: mergeCounts(reports.map((report) => report.failures))
    }
  }

  /** Every probe checked against `expected` (by group), in a few numbers: for many clients, where a report would list each. */
  async tally(expected: Readonly<Record<string, Expected>>): Promise<MergedTally> {
    const tallies = await Promise.all(this.children.map(({ child }) => this.ask<Tally>(child, { type: "tally", expected }, "tally")))
    const sum = (field: "clients" | "connected" | "disconnected" | "complete" | "missing" | "duplicated" | "wrong" | "probeMessages") =>
      tallies.reduce((total, tally) => total + tally[field], 0)
    const latency = new Histogram()
    const connectLatency = new Histogram()
    const streams: Record<string, Set<number>> = {}
    for (const tally of tallies) {
      latency.merge(tally.latency)
      connectLatency.merge(tally.connectLatency)
      for (const [group, crcs] of Object.entries(tally.streams)) streams[group] = new Set([...(streams[group] ?? []), ...crcs])
    }
    return {
      clients: sum("clients"),
      connected: sum("connected"),
      disconnected: sum("disconnected"),
      complete: sum("complete"),
      missing: sum("missing"),
      duplicated: sum("duplicated"),
      wrong: sum("wrong"),
      streams: Object.fromEntries(Object.entries(streams).map(([group, crcs]) => [group, [...crcs]])),
      latency,
      connectLatency,
      lastReceiptAt: Math.max(...tallies.map((tally) => tally.lastReceiptAt)),
      probeMessages: sum("probeMessages"),
      failures: mergeCounts(tallies.map((tally) => tally.failures))
    }
  }

  async reset() {
    await Promise.all(this.children.map(({ child }) => this.ask(child, { type: "reset" }, "reset")))
  }

  close() {
    for (const { child } of this.children) if (child.connected) child.send({ type: "close" } satisfies Command)
  }
}

const mergeCounts = (counts: ReadonlyArray<Record<string, number>>) => {
  const merged: Record<string, number> = {}
  for (const each of counts) for (const [key, count] of Object.entries(each)) merged[key] = (merged[key] ?? 0) + count
  return merged
}
