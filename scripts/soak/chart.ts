/**
 * Draws a soak's timeline as a self-contained SVG: the delivery delay of the messages written in
 * each second (longest and median, log scale), under one lane per fault kind showing when each
 * fault was in force, with faint bands down the plot so that delays line up with their causes.
 */
import * as Fs from "node:fs"
import type { Report } from "./checker.js"

const kinds = [
  ["node-kill", "#d92d20"],
  ["node-term", "#f79009"],
  ["node-freeze", "#7a5af8"],
  ["db-cut", "#0e9384"],
  ["db-stall", "#15b79e"],
  ["db-restart", "#2e90fa"],
  ["reader-stop", "#ee46bc"],
  ["burst", "#667085"],
  ["resume-old", "#66c61c"],
  ["long-transaction", "#b54708"]
] as const

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;")

export const writeChart = (file: string, report: Report, caption: string) => {
  const width = 960
  const left = 130
  const right = 20
  const laneHeight = 14
  const lanesTop = 44
  const plotTop = lanesTop + kinds.length * laneHeight + 16
  const plotHeight = 260
  const height = plotTop + plotHeight + 62
  const plotWidth = width - left - right
  const endSeconds = Math.max(1, report.endedAt / 1000, ...report.timeline.map((point) => point.second + 1))
  const x = (seconds: number) => left + (seconds / endSeconds) * plotWidth
  const longest = Math.max(1000, ...report.timeline.map((point) => point.max))
  const decades = Math.ceil(Math.log10(longest / 10))
  const y = (millis: number) => {
    const clamped = Math.min(10 * 10 ** decades, Math.max(10, millis))
    return plotTop + plotHeight - ((Math.log10(clamped) - 1) / decades) * plotHeight
  }
  const parts: Array<string> = []
  const text = (tx: number, ty: number, content: string, attrs = "") =>
    parts.push(`<text x="${tx.toFixed(1)}" y="${ty.toFixed(1)}" ${attrs}>${escape(content)}</text>`)

  text(left, 22, "How long each message took to reach every subscriber of its channel, with the faults in force", `font-weight="600"`)

  // Fault lanes, and their bands down the plot.
  kinds.forEach(([kind, color], lane) => {
    const top = lanesTop + lane * laneHeight
    text(left - 8, top + 10, kind, `text-anchor="end" fill="#475467" font-size="11"`)
    parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${top + laneHeight / 2}" y2="${top + laneHeight / 2}" stroke="#eef0f3"/>`)
    for (const span of report.spans.filter((span) => span.kind === kind)) {
      const from = x(span.start / 1000)
      const spanWidth = Math.max(2, x(span.end / 1000) - from)
      parts.push(`<rect x="${from.toFixed(1)}" y="${top + 2}" width="${spanWidth.toFixed(1)}" height="${laneHeight - 4}" fill="${color}"><title>${escape(`${span.kind}#${span.n} ${span.target}${span.detail === undefined ? "" : `: ${span.detail}`}`)}</title></rect>`)
      parts.push(`<rect x="${from.toFixed(1)}" y="${plotTop}" width="${spanWidth.toFixed(1)}" height="${plotHeight}" fill="${color}" opacity="0.08"/>`)
    }
  })

  // Axes.
  parts.push(`<rect x="${left}" y="${plotTop}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#d0d5dd"/>`)
  for (let decade = 0; decade <= decades; decade++) {
    const millis = 10 * 10 ** decade
    parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y(millis).toFixed(1)}" y2="${y(millis).toFixed(1)}" stroke="#eef0f3"/>`)
    text(left - 8, y(millis) + 4, millis >= 1000 ? `${millis / 1000} s` : `${millis} ms`, `text-anchor="end" fill="#667085"`)
  }
  const step = [10, 30, 60, 120, 300].find((candidate) => endSeconds / candidate <= 12) ?? 600
  for (let second = 0; second <= endSeconds; second += step) {
    text(x(second), plotTop + plotHeight + 18, `${second} s`, `text-anchor="middle" fill="#667085"`)
  }
  text(left, plotTop + plotHeight + 38, "time the message was written, from the start of the run", `fill="#667085"`)

  const line = (points: ReadonlyArray<readonly [number, number]>, color: string, dash = "") =>
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" ${dash} points="${points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ")}"/>`)
  line(report.timeline.map((point) => [x(point.second + 0.5), y(point.max)] as const), "#d92d20")
  line(report.timeline.map((point) => [x(point.second + 0.5), y(point.median)] as const), "#2563eb")

  // Legend and provenance.
  const legendX = left + plotWidth - 330
  const legendY = plotTop + plotHeight + 38
  parts.push(`<rect x="${legendX}" y="${legendY - 6}" width="14" height="3" fill="#d92d20"/>`)
  text(legendX + 20, legendY, "longest", `fill="#475467" font-size="12"`)
  parts.push(`<rect x="${legendX + 90}" y="${legendY - 6}" width="14" height="3" fill="#2563eb"/>`)
  text(legendX + 110, legendY, "median, per second of writing", `fill="#475467" font-size="12"`)
  text(left, height - 10, caption, `fill="#667085" font-size="11"`)

  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="13">
<rect width="${width}" height="${height}" fill="#ffffff"/>
${parts.join("\n")}
</svg>
`
  Fs.writeFileSync(file, svg)
}
