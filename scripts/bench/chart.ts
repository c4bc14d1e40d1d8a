/**
 * Charts for the README, as self-contained SVGs: scenario (d), latency percentiles and server
 * memory against the number of clients for pollcast and the baseline; and scenario (intervals),
 * latency against POLL_INTERVAL with and without wake-up.
 */
import { Svg } from "../support/Svg.js"

interface Step {
  readonly clients: number
  readonly connection: { readonly rssWithClientsMB: number }
  readonly delivery: { readonly latencyMs: { readonly p50: number; readonly p99: number } }
}

interface Output {
  readonly machine: { cpu: string; cores: number; memoryGiB: number; node: string; postgres: string }
  readonly at: string
  readonly results: Record<string, unknown>
}

const colors = { pollcast: "#2563eb", baseline: "#ea580c", interval: "#475467" } as const

const labels = {
  pollcast: "pollcast",
  interval: "pollcast, interval only",
  baseline: "baseline (node:http + pg + setInterval)"
} as const
const legendWidths = { pollcast: 110, interval: 190, baseline: 300 } as const
// Latency lines: p99 solid, p50 dashed, each measurement a dot.
const solid = { width: 2, dots: true }
const dashed = { width: 2, dash: "5 4", dots: true }

export const writeChart = (file: string, output: Output) => {
  const d = output.results.d as { rate: number; pollIntervalMs: number } & Partial<Record<keyof typeof colors, { curve: Array<Step> }>>
  const series = (["pollcast", "interval", "baseline"] as const).flatMap((target) => (d[target] === undefined ? [] : [{ target, curve: d[target]!.curve }]))
  const allClients = series.flatMap((s) => s.curve.map((step) => step.clients))
  const maxClients = Math.max(...allClients, 1)

  const width = 960
  const height = 430
  const panel = { top: 60, height: 290, width: 380 }
  const lefts = [70, 550]
  const x = (left: number, clients: number) => left + (clients / maxClients) * panel.width
  const svg = new Svg(width, height)

  // Latency, log scale from 10 ms to 10 s.
  const latencyY = (millis: number) => {
    const clamped = Math.min(10_000, Math.max(10, millis))
    return panel.top + panel.height - ((Math.log10(clamped) - 1) / 3) * panel.height
  }
  // Memory, linear from 0.
  const maxRss = Math.max(...series.flatMap((s) => s.curve.map((step) => step.connection.rssWithClientsMB)), 1) * 1.1
  const rssY = (mb: number) => panel.top + panel.height - (mb / maxRss) * panel.height

  const axes = (left: number, title: string, ticks: Array<[number, string]>) => {
    svg.rect(left, panel.top, panel.width, panel.height, `fill="none" stroke="#d0d5dd"`)
    svg.text(left, panel.top - 12, title, `font-weight="600"`)
    for (const [y, label] of ticks) {
      svg.line(left, left + panel.width, y, y, `stroke="#eef0f3"`)
      svg.text(left - 8, y + 4, label, `text-anchor="end" fill="#667085"`)
    }
    for (const clients of [...new Set(allClients)]) {
      svg.text(x(left, clients), panel.top + panel.height + 18, clients >= 1000 ? `${clients / 1000}k` : String(clients), `text-anchor="middle" fill="#667085"`)
    }
    svg.text(left + panel.width / 2, panel.top + panel.height + 38, "SSE clients on one node", `text-anchor="middle" fill="#667085"`)
  }
  axes(lefts[0]!, "Delivery latency (ms, log scale)", [10, 100, 1000, 10_000].map((ms) => [latencyY(ms), String(ms)]))
  const rssStep = maxRss > 1000 ? 500 : maxRss > 400 ? 200 : 100
  axes(lefts[1]!, "Server memory, RSS (MB)", Array.from({ length: Math.floor(maxRss / rssStep) + 1 }, (_, i) => [rssY(i * rssStep), String(i * rssStep)]))
  svg.line(lefts[0]!, lefts[0]! + panel.width, latencyY(1000), latencyY(1000), `stroke="#d92d20" stroke-dasharray="2 3"`)
  svg.text(lefts[0]! + panel.width - 4, latencyY(1000) - 5, "1 s", `text-anchor="end" fill="#d92d20"`)

  for (const { curve, target } of series) {
    const color = colors[target]
    svg.polyline(curve.map((step) => [x(lefts[0]!, step.clients), latencyY(step.delivery.latencyMs.p99)]), color, solid)
    svg.polyline(curve.map((step) => [x(lefts[0]!, step.clients), latencyY(step.delivery.latencyMs.p50)]), color, dashed)
    svg.polyline(curve.map((step) => [x(lefts[1]!, step.clients), rssY(step.connection.rssWithClientsMB)]), color, solid)
  }

  // Legend and provenance.
  let legendX = 70
  for (const { target } of series) {
    svg.rect(legendX, 18, 14, 4, `fill="${colors[target]}"`)
    svg.text(legendX + 20, 24, labels[target])
    legendX += legendWidths[target]
  }
  svg.text(legendX, 24, "latency: solid p99, dashed p50", `fill="#667085"`)
  const m = output.machine
  svg.text(70, height - 12, `Measured ${output.at.slice(0, 10)} on ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB; Node ${m.node}, PostgreSQL ${m.postgres}; ${d.rate} msg/s, POLL_INTERVAL ${d.pollIntervalMs} ms; load generator on the same machine.`, `fill="#667085" font-size="11"`)
  svg.write(file)
}

interface IntervalStep {
  readonly pollIntervalMs: number
  readonly pollcast?: { readonly delivery: { readonly latencyMs: { readonly p50: number; readonly p99: number } } }
  readonly interval?: { readonly delivery: { readonly latencyMs: { readonly p50: number; readonly p99: number } } }
}

/** Latency p50 and p99 against POLL_INTERVAL (both log scales), with wake-up and interval-only. */
export const writeIntervalChart = (file: string, output: Output) => {
  const sweep = output.results.intervals as { load: { clients: number; rate: number }; steps: Array<IntervalStep> }
  const intervals = sweep.steps.map((step) => step.pollIntervalMs)
  const width = 640
  const height = 440
  const panel = { left: 80, top: 60, width: 520, height: 300 }
  const svg = new Svg(width, height)
  const [lowest, highest] = [Math.min(...intervals), Math.max(...intervals)]
  const span = Math.max(1e-9, Math.log10(highest) - Math.log10(lowest))
  const x = (interval: number) => panel.left + ((Math.log10(interval) - Math.log10(lowest)) / span) * panel.width
  // Latency from 1 ms to 10 s.
  const y = (millis: number) => {
    const clamped = Math.min(10_000, Math.max(1, millis))
    return panel.top + panel.height - (Math.log10(clamped) / 4) * panel.height
  }

  svg.rect(panel.left, panel.top, panel.width, panel.height, `fill="none" stroke="#d0d5dd"`)
  svg.text(panel.left, panel.top - 12, "Delivery latency (ms, log scale) against POLL_INTERVAL", `font-weight="600"`)
  for (const ms of [1, 10, 100, 1000, 10_000]) {
    svg.line(panel.left, panel.left + panel.width, y(ms), y(ms), `stroke="#eef0f3"`)
    svg.text(panel.left - 8, y(ms) + 4, String(ms), `text-anchor="end" fill="#667085"`)
  }
  for (const interval of intervals) {
    svg.text(x(interval), panel.top + panel.height + 18, interval >= 1000 ? `${interval / 1000} s` : `${interval} ms`, `text-anchor="middle" fill="#667085"`)
  }
  svg.text(panel.left + panel.width / 2, panel.top + panel.height + 38, "POLL_INTERVAL (log scale)", `text-anchor="middle" fill="#667085"`)

  const modes = (["pollcast", "interval"] as const).filter((mode) => sweep.steps.some((step) => step[mode] !== undefined))
  for (const mode of modes) {
    const measured = sweep.steps.flatMap((step) => (step[mode] === undefined ? [] : [{ interval: step.pollIntervalMs, latency: step[mode]!.delivery.latencyMs }]))
    svg.polyline(measured.map(({ interval, latency }) => [x(interval), y(latency.p99)]), colors[mode], solid)
    svg.polyline(measured.map(({ interval, latency }) => [x(interval), y(latency.p50)]), colors[mode], dashed)
  }

  let legendX = panel.left
  for (const mode of modes) {
    svg.rect(legendX, 18, 14, 4, `fill="${colors[mode]}"`)
    svg.text(legendX + 20, 24, mode === "pollcast" ? "pollcast, woken by NOTIFY" : "pollcast, interval only")
    legendX += 200
  }
  svg.text(legendX, 24, "solid p99, dashed p50", `fill="#667085"`)
  const m = output.machine
  svg.text(panel.left, height - 26, `Measured ${output.at.slice(0, 10)} on ${m.cpu}, ${m.cores} cores; Node ${m.node}, PostgreSQL ${m.postgres};`, `fill="#667085" font-size="11"`)
  svg.text(panel.left, height - 12, `${sweep.load.clients} clients, ${sweep.load.rate} msg/s, from POST sent to event received; load generator on the same machine.`, `fill="#667085" font-size="11"`)
  svg.write(file)
}
