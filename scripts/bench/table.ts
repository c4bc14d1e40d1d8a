/**
 * The bench's table: rows of figures for each scenario's results, one cell per target; the
 * median of each cell over the rounds (--repeat, --pool); and the printed table with its
 * comparison columns (auth on against off, against --compare, against the baseline, and each
 * --workers target's figures divided by the first's and by compare's) and, for the fan-out
 * figures, the differences between builds with their intervals.
 */
import type { Delivery, Load, RunResult } from "./measure.js"
import { type Target, workersOf } from "./options.js"
import type { Curve } from "./scenarios/d.js"
import type { Saturation } from "./scenarios/e.js"
import { insertRates, type PollsRun, postRate } from "./scenarios/polls.js"
import type { ScaleRun } from "./scenarios/scale.js"
import type { WritersRun } from "./scenarios/writers.js"
import { median, medianInterval, middleOf, round } from "./statistics.js"

export type Value = number | string | undefined
export interface Row {
  readonly section: string
  readonly label: string
  readonly values: Partial<Record<Target, Value>>
  /** For the ratio against the baseline; undefined: no ratio. */
  readonly higherIsBetter?: boolean | undefined
  /** A figure of the fan-out itself, compared between auth on and off, and against --compare. */
  readonly fanOut: boolean
}

/** The table's rows for one round's results (a section heading is a row without values). */
export const tableOf = (targets: ReadonlyArray<Target>, results: Record<string, unknown>): Array<Row> => {
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
    row("server processes (memory and CPU summed over them)", of(runs, (r) => r.connection.processes))
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
    for (const target of targets) {
      const burst = wakeup[target]?.burst
      if (burst !== undefined) bursts[target] = burst
    }
    deliveryRows(bursts)
  }
  const d = results.d as Partial<Record<Target, Curve>> | undefined
  if (d !== undefined) {
    section("(d) clients one node holds with p99 ≤ 1 s")
    row("clients (largest step held)", of(d, (curve) => curve.maxClientsWithinP99OneSecond), true)
    row("p99 at largest step (ms)", of(d, (curve) => curve.curve[curve.curve.length - 1]?.delivery.latencyMs.p99), false)
  }
  const e = results.e as Partial<Record<Target, Saturation>> | undefined
  if (e !== undefined) {
    section("(e) saturation, 1000 clients")
    row("highest sustained deliveries/s", of(e, (run) => run.highestSustainedDeliveriesPerSecond), true, true)
    row("polls/s at the highest rate sustained", of(e, (run) =>
      run.steps.find((step) => step.deliveriesPerSecond === run.highestSustainedDeliveriesPerSecond)?.pollsPerSecond))
  }
  const writers = results.writers as (Partial<Record<Target, WritersRun>> & { load: Load }) | undefined
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
  // Runs from before the idle window and the POSTs were added hold their INSERT steps alone.
  const polls = results.polls as (Partial<Record<Target, PollsRun | Array<Delivery>>> & { load: Load }) | undefined
  if (polls !== undefined) {
    const runOf = (target: Target): Partial<PollsRun> | undefined => {
      const run = polls[target]
      return Array.isArray(run) ? { inserts: run } : run
    }
    section(`(polls) ${polls.load.clients} clients, idle for ${polls.load.seconds} s, POLL_INTERVAL 1000 ms`)
    row("polls/s (pollcast_polls_total, summed over the node's processes)", (target) => runOf(target)?.idle?.pollsPerSecond)
    row("DB queries/s", (target) => runOf(target)?.idle?.queriesPerSecond)
    const stepRows = (title: string, what: string, step: (run: Partial<PollsRun>) => Delivery | undefined) => {
      section(`(polls) ${polls.load.clients} clients, ${title}, POLL_INTERVAL 1000 ms`)
      const cell = (f: (delivery: Delivery) => Value) => (target: Target) => {
        const run = runOf(target)
        const delivery = run === undefined ? undefined : step(run)
        return delivery === undefined ? undefined : f(delivery)
      }
      row(`${what}/s achieved`, cell((step) => step.publishedRate))
      row("polls/s", cell((step) => step.pollsPerSecond))
      row("notifications/s", cell((step) => step.notificationsPerSecond))
      row(`DB queries/s (${what} included)`, cell((step) => step.databaseQueriesPerSecond))
      row("latency p50 / p99 (ms)", cell((step) => `${step.latencyMs.p50} / ${step.latencyMs.p99}`))
      row("complete", cell((step) => String(step.complete)))
    }
    stepRows(`POSTs at ${postRate}/s`, "POSTs", (run) => run.posts)
    for (const [index, rate] of insertRates.entries()) stepRows(`plain INSERTs at ${rate}/s`, "inserts", (run) => run.inserts?.[index])
  }
  const scale = results.scale as (Partial<Record<Target, ScaleRun>> & { subscribers: number; broadcasts: number }) | undefined
  if (scale !== undefined) {
    section(`(scale) ${scale.subscribers} subscribers on one channel, ${scale.broadcasts} broadcasts, POLL_INTERVAL 1000 ms`)
    const cell = (f: (run: ScaleRun) => Value) => of(scale, f)
    row("server processes (memory and CPU summed over them)", cell((run) => run.processes.length))
    row("streams held", cell((run) => run.held), true)
    row("  as the node counts them (pollcast_event_streams_open)", cell((run) => run.serverStreams))
    row("  stopped short: streams open when failures began (about)", cell((run) => run.shortfall?.failuresBegan?.opened))
    row("  stopped short: why clients failed", cell((run) => run.shortfall === undefined ? undefined : Object.entries(run.shortfall.failures).map(([why, count]) => `${why} ×${count}`).join(", ")))
    row("connect: all streams (s)", cell((run) => run.connect.seconds), false)
    row("connect: streams/s", cell((run) => run.connect.perSecond), true)
    row("connect p50 / p99 / max (ms)", cell((run) => `${run.connect.ms.p50} / ${run.connect.ms.p99} / ${run.connect.ms.max}`))
    row("complete (every subscriber, every broadcast, once, checked per subscriber)", cell((run) => String(run.delivery.complete)))
    row("  subscribers with every broadcast", cell((run) => run.delivery.subscribersComplete), true)
    row("broadcast latency p50 (ms)", cell((run) => run.delivery.latencyMs.p50), false)
    row("broadcast latency p99 (ms)", cell((run) => run.delivery.latencyMs.p99), false)
    row("broadcast latency max (ms)", cell((run) => run.delivery.latencyMs.max), false)
    row("server CPU s (broadcasts)", cell((run) => run.delivery.serverCpuSeconds), false)
    row("load generators' CPU s meanwhile (same cores)", cell((run) => run.delivery.generatorCpuSeconds ?? "–"), false)
    row("server RSS before / with the streams (MB)", cell((run) => `${run.memory.rssBeforeMB} / ${run.memory.rssWithStreamsMB}`))
    row("server KB per connection (all / second half)", cell((run) => `${run.memory.kbPerConnection} / ${run.memory.secondHalfKbPerConnection ?? "–"}`), false)
    row("server KB per connection, live (after a full GC)", cell((run) => run.memory.liveKbPerConnection), false)
    row("  of which the JavaScript heap in use (after a full GC)", cell((run) => run.memory.heapKbPerConnection ?? "–"), false)
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

/** Each figure's median over the rounds' tables, in the first round's order. */
export const mediansOf = (targets: ReadonlyArray<Target>, roundTables: ReadonlyArray<ReadonlyArray<Row>>): Array<Row> =>
  roundTables[0]!.map((first) => {
    const same = roundTables.map((rows) => rows.find((row) => rowKey(row) === rowKey(first)))
    const values: Partial<Record<Target, Value>> = {}
    for (const target of targets) values[target] = medianCell(same.map((row) => row?.values[target]))
    return { ...first, values }
  })

/** `value` divided by `by` (each part of "p50 / p99" by its own), as a factor: "" where either is not a number. */
const quotient = (value: Value, by: Value): string => {
  const parts = (cell: Value) => (typeof cell === "number" ? [cell] : typeof cell === "string" ? cell.split(" / ").map(Number) : [])
  const values = parts(value)
  const divisors = parts(by)
  if (values.length === 0 || values.length !== divisors.length) return ""
  if (!values.every(Number.isFinite) || !divisors.every((divisor) => Number.isFinite(divisor) && divisor > 0)) return ""
  return `${values.map((part, i) => round(part / divisors[i]!, 2)).join(" / ")}×`
}

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

/** Prints the medians with the comparison columns, then the fan-out differences between builds. */
export const print = (options: {
  readonly targets: ReadonlyArray<Target>
  readonly targetNames: Record<Target, string>
  readonly roundTables: ReadonlyArray<ReadonlyArray<Row>>
  readonly medians: ReadonlyArray<Row>
}) => {
  const { medians, roundTables, targetNames } = options
  const rounds = roundTables.length
  // The targets that ran in the scenarios shown (each runs only the targets it compares).
  const targets = options.targets.filter((target) => medians.some((row) => row.values[target] !== undefined))
  // Columns: each target that ran; then auth on against off, this checkout against --compare, and
  // pollcast against the baseline; then each --workers target divided by the first, and by compare.
  const compareAuth = targets.includes("pollcast") && targets.includes("pollcast-auth")
  const compareOther = targets.includes("pollcast") && targets.includes("compare")
  const compareBaseline = targets.includes("pollcast") && targets.includes("baseline")
  const comparisons: Array<{ readonly heading: string; readonly cell: (row: Row) => string }> = []
  if (compareAuth) comparisons.push({ heading: "auth on vs off", cell: (row) => percentChange(row.values.pollcast, row.values["pollcast-auth"]) })
  // This checkout against the other: + means this one is higher.
  if (compareOther) comparisons.push({ heading: "pollcast vs compare", cell: (row) => percentChange(row.values.compare, row.values.pollcast) })
  if (compareBaseline) {
    comparisons.push({
      heading: "pollcast vs baseline",
      cell: (row) => {
        const p = row.values.pollcast
        const b = row.values.baseline
        return typeof p === "number" && typeof b === "number" && p > 0 && b > 0 && row.higherIsBetter !== undefined
          ? row.higherIsBetter ? `${round(p / b, 2)}×` : `${round(b / p, 2)}×`
          : ""
      }
    })
  }
  const workerTargets = targets.filter((target) => workersOf(target) !== undefined)
  const short = (target: Target) => (workersOf(target) === undefined ? target : `W=${workersOf(target)}`)
  for (const [index, target] of workerTargets.entries()) {
    const first = workerTargets[0]!
    if (index > 0) comparisons.push({ heading: `${short(target)} / ${short(first)}`, cell: (row) => quotient(row.values[target], row.values[first]) })
  }
  if (targets.includes("compare")) {
    for (const target of workerTargets) comparisons.push({ heading: `${short(target)} / compare`, cell: (row) => quotient(row.values[target], row.values.compare) })
  }

  const lines = medians.map((row) =>
    row.label === ""
      ? [`— ${row.section}`, ...targets.map(() => ""), ...comparisons.map(() => "")]
      : [row.label, ...targets.map((target) => String(row.values[target] ?? "–")), ...comparisons.map((comparison) => comparison.cell(row))]
  )
  const headings = [
    rounds > 1 ? `medians of ${rounds} rounds` : "",
    ...targets.map((target) => targetNames[target] ?? target),
    ...comparisons.map((comparison) => comparison.heading)
  ]
  const widths = headings.map((heading, column) => Math.max(heading.length, ...lines.map((line) => line[column]!.length), 8))
  console.log(headings.map((cell, i) => cell.padEnd(widths[i]!)).join("  "))
  for (const line of lines) console.log(line.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "))

  const signed = (value: number) => `${value >= 0 ? "+" : ""}${round(value)}%`

  /**
   * The largest difference in the fan-out figures (of the medians). With --repeat, each round's
   * difference (the targets ran back to back, so a round's pair shares the machine's state), their
   * median and its 95% interval: the difference is shown within 5% only when that whole interval is.
   */
  const largestChange = (what: string, from: Target, to: Target) => {
    const changes = fanOutChanges(medians, from, to)
    if (changes.length === 0) return
    const largest = changes.reduce((worst, change) => (Math.abs(change.change) > Math.abs(worst.change) ? change : worst))
    console.log(
      `\n${what}, fan-out (deliveries/s, latency p50 and p99${rounds > 1 ? ", medians" : ""}): largest difference ` +
        `${round(largest.change)}% (${largest.figure}); ${changes.every((change) => Math.abs(change.change) <= 5) ? "all" : "not all"} within 5%`
    )
    if (rounds === 1) return
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
}
