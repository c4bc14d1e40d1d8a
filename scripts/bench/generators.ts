/**
 * The load generators: child processes (clients.ts) holding the bench's SSE clients, 10,000 at
 * most each, asked over IPC to connect, report what their clients received, and start afresh.
 */
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { root } from "../support/ServiceProcess.js"
import type { Command, Report } from "./clients.js"
import { Histogram } from "./statistics.js"
import type { BenchServer } from "./targets.js"

const clientsPerGenerator = 10_000

export class Generators {
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
