/**
 * Draws a soak's timeline as a self-contained SVG: the delivery delay of the messages written in
 * each second (longest and median, log scale), under one lane per fault kind showing when each
 * fault was in force, with faint bands down the plot so that delays line up with their causes.
 */
import { Svg } from "../support/Svg.js"
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
  const svg = new Svg(width, height)

  svg.text(left, 22, "How long each message took to reach every subscriber of its channel, with the faults in force", `font-weight="600"`)

  // Fault lanes, and their bands down the plot.
  kinds.forEach(([kind, color], lane) => {
    const top = lanesTop + lane * laneHeight
    svg.text(left - 8, top + 10, kind, `text-anchor="end" fill="#475467" font-size="11"`)
    svg.line(left, left + plotWidth, top + laneHeight / 2, top + laneHeight / 2, `stroke="#eef0f3"`)
    for (const span of report.spans.filter((span) => span.kind === kind)) {
      const from = x(span.start / 1000)
      const spanWidth = Math.max(2, x(span.end / 1000) - from)
      svg.rect(from, top + 2, spanWidth, laneHeight - 4, `fill="${color}"`, `${span.kind}#${span.n} ${span.target}${span.detail === undefined ? "" : `: ${span.detail}`}`)
      svg.rect(from, plotTop, spanWidth, plotHeight, `fill="${color}" opacity="0.08"`)
    }
  })

  // Axes.
  svg.rect(left, plotTop, plotWidth, plotHeight, `fill="none" stroke="#d0d5dd"`)
  for (let decade = 0; decade <= decades; decade++) {
    const millis = 10 * 10 ** decade
    svg.line(left, left + plotWidth, y(millis), y(millis), `stroke="#eef0f3"`)
    svg.text(left - 8, y(millis) + 4, millis >= 1000 ? `${millis / 1000} s` : `${millis} ms`, `text-anchor="end" fill="#667085"`)
  }
  const step = [10, 30, 60, 120, 300].find((candidate) => endSeconds / candidate <= 12) ?? 600
  for (let second = 0; second <= endSeconds; second += step) {
    svg.text(x(second), plotTop + plotHeight + 18, `${second} s`, `text-anchor="middle" fill="#667085"`)
  }
  svg.text(left, plotTop + plotHeight + 38, "time the message was written, from the start of the run", `fill="#667085"`)

  svg.polyline(report.timeline.map((point) => [x(point.second + 0.5), y(point.max)] as const), "#d92d20", { width: 1.5 })
  svg.polyline(report.timeline.map((point) => [x(point.second + 0.5), y(point.median)] as const), "#2563eb", { width: 1.5 })

  // Legend and provenance.
  const legendX = left + plotWidth - 330
  const legendY = plotTop + plotHeight + 38
  svg.rect(legendX, legendY - 6, 14, 3, `fill="#d92d20"`)
  svg.text(legendX + 20, legendY, "longest", `fill="#475467" font-size="12"`)
  svg.rect(legendX + 90, legendY - 6, 14, 3, `fill="#2563eb"`)
  svg.text(legendX + 110, legendY, "median, per second of writing", `fill="#475467" font-size="12"`)
  svg.text(left, height - 10, caption, `fill="#667085" font-size="11"`)
  svg.write(file)
}
