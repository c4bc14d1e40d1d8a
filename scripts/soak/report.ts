/**
 * A soak's result as a table: faults injected by kind, messages written, deliveries, what went
 * wrong, and the longest delay with the faults it overlapped; as text for the terminal and as
 * Markdown for the README.
 */
import type { Report } from "./checker.js"
import type { Meta } from "./history.js"
import { faultKinds } from "./plan.js"

const number = (value: number) => value.toLocaleString("en-US")
const duration = (millis: number) => (millis < 1000 ? `${Math.round(millis)} ms` : `${(millis / 1000).toFixed(1)} s`)

/** One line saying which run this was. */
export const caption = (meta: typeof Meta.Type | undefined) =>
  meta === undefined
    ? "pollcast fault soak"
    : `pollcast fault soak, seed ${meta.seed}: ${meta.minutes} min, ${meta.nodes} nodes${meta.rate === undefined ? "" : `, ${meta.rate} msg/s`}; ${
      meta.startedAt.slice(0, 16).replace("T", " ")
    } UTC${meta.machine === undefined ? "" : ` on ${meta.machine}`}`

export const rows = (report: Report): Array<readonly [string, string]> => {
  const lines: Array<readonly [string, string]> = []
  const byKind = new Map(report.faults.map((fault) => [fault.kind, fault]))
  const injected = faultKinds.reduce((sum, kind) => sum + (byKind.get(kind)?.count ?? 0), 0)
  lines.push(["faults injected", `${number(injected)}`])
  for (const kind of [...faultKinds, "long-transaction"]) {
    const fault = byKind.get(kind)
    lines.push([`  ${kind}${kind === "long-transaction" ? " (SQL writer)" : ""}`, fault === undefined ? "0" : `${fault.count} (${duration(fault.millis)} in all)`])
  }
  const { post, sql } = report.writes
  lines.push(["messages written: POST", `${number(post.acked)} answered 201, ${number(post.unknown)} unknown outcome, ${number(post.refused)} refused`])
  lines.push(["messages written: SQL", `${number(sql.acked)} committed, ${number(sql.rolledback)} rolled back, ${number(sql.failed)} failed, ${number(sql.unknown)} unknown outcome`])
  lines.push(["rows stored", `${number(report.rows)} (of which ${number(report.writes.unknownStored)} of unknown outcome)`])
  lines.push(["subscribers / connections", `${report.subscribers} / ${number(report.connections)} (${number(report.staleConnections)} abandoned as stale)`])
  if (report.liveRestarts > 0) lines.push(["live subscribers that started over without an id", number(report.liveRestarts)])
  lines.push(["deliveries", number(report.deliveries)])
  lines.push(["lost", number(report.lost)])
  lines.push(["duplicated", number(report.duplicated)])
  lines.push(["out of order", number(report.outOfOrder)])
  lines.push(["delivered but never stored", number(report.unstored)])
  lines.push(["storage errors", number(report.storageErrors)])
  if (report.resets > 0) lines.push(["reset events (skipped messages)", `${report.resets} (${number(report.skippedByReset)})`])
  lines.push(["delay p50 / p99", `${duration(report.delay.p50)} / ${duration(report.delay.p99)}`])
  const longest = report.delay.longest
  lines.push([
    "longest delay",
    longest === undefined
      ? "–"
      : `${duration(longest.millis)}: ${longest.key} on ${longest.channel} to subscriber ${longest.subscriber}, written at ${duration(longest.writtenAt)}; overlapping ${
        longest.overlapping.length === 0 ? "no fault" : longest.overlapping.join(", ")
      }`
  ])
  const errors = report.anomalies.filter((anomaly) => anomaly.severity === "error").length
  lines.push(["anomalies", `${errors} errors, ${report.anomalies.length - errors} warnings`])
  lines.push(["result", report.ok ? "PASS" : "FAIL"])
  return lines
}

export const text = (report: Report) => {
  const lines = rows(report)
  const width = Math.max(...lines.map(([label]) => label.length))
  return lines.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join("\n")
}

export const markdown = (report: Report) =>
  ["| | |", "| --- | --- |", ...rows(report).map(([label, value]) => `| ${label.trim() === label ? label : `&nbsp;&nbsp;${label.trim()}`} | ${value.replace(/\|/g, "\\|")} |`)].join("\n")
