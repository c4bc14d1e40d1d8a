/**
 * `npm run bench`: pollcast against a hand-rolled baseline (baseline-server.mjs), same load, same
 * machine, same PostgreSQL. Starts PostgreSQL (embedded, or the server at DATABASE_URL, on which
 * it creates and drops a database per run; database.ts), each server as a child process
 * (targets.ts), and load generators in separate processes (generators.ts, clients.ts) holding
 * real SSE connections; runs the scenarios (scenarios/*.ts) the targets they compare, each
 * measured as measure.ts says; prints the table (table.ts) and draws the charts (chart.ts).
 *
 * Targets: `pollcast`, `interval`, `pollcast-auth`, `baseline`, `compare` and `pollcast-wN` (see targets.ts).
 * Scenarios: (a) latency at 100 msg/s, (b) 10,000 clients, (c) 100 channels, (d) clients per node,
 * (e) saturation, `fanout` (builds compared by their fan-out), `wakeup`, `writers` (what a node
 * costs the database's other writers), `polls` (polls per second, idle and under load),
 * `intervals` (latency against POLL_INTERVAL), and `scale` (100,000 subscribers on one node of
 * several processes; only when named).
 *
 * Options: --scenarios a,b,c,d,e,fanout,wakeup,polls,intervals,writers,scale (default: all but scale)
 *          --quick (smaller, shorter)
 *          --targets pollcast,interval,pollcast-auth,baseline,compare (default: all that apply)
 *          --workers N,M,...: also run the pollcast target with WORKERS=N, M, ... (targets
 *          pollcast-wN, columns "pollcast W=N"), wherever pollcast runs; with --workers and no
 *          --targets, only those (and compare, with --compare). The table adds each one's figures
 *          divided by the first one's, and by compare's
 *          --subscribers N (default 100,000), --broadcasts N (default 10): `scale`'s load
 *          --clients-per-generator N: `scale`'s streams per load generator process (default
 *          15,000, at most 16,000), each generator connecting from a source address of its own
 *          --compare DIR: also run, in every scenario but polls, intervals and scale, the pollcast built in DIR (another
 *          checkout, with `npm run build` done there) as the target `compare`, e.g. the previous
 *          commit, to measure what a change costs in the same run
 *          --pollcast DIR: the pollcast targets run the build in DIR instead of this checkout's (with
 *          --compare, two earlier commits side by side)
 *          --repeat N: every scenario N times, targets interleaved; the table shows medians, and each
 *          round's differences in the fan-out figures are printed under it, with (from 6 rounds on)
 *          the median of those differences and its 95% interval
 *          --seconds N: how long (a), (b), (c), fanout, wakeup, writers and polls publish, and polls idles
 *          (default 12; 5 with --quick)
 *          --pool FILE,...: with --repeat, adds the rounds of earlier runs (their bench-results JSON)
 *          to this run's medians and intervals, when those runs measured the same builds
 *          --durable: the embedded PostgreSQL waits for every commit's flush (synchronous_commit=on)
 *          --profile DIR: the servers run under --cpu-prof, writing their profiles to DIR
 *          (profileSummary.ts summarises one)
 *          --trace-gc: the servers run with --trace-gc, their output kept in bench-server-output.log
 *          in the temporary folder
 * Writes bench-results/bench-<time>.json, docs/bench-chart.svg (with d) and docs/bench-wakeup-chart.svg
 * (with intervals), and prints a table. Any other setting of pollcast passes through the environment
 * (e.g. WAKEUP_MIN_GAP="0 millis"); BENCH_PRELOAD=FILE is imported into every server.
 *
 * The other benches, each on its own: api.ts, connect.ts, fanout.ts, history.ts, retention.ts
 * (npm run bench:api, bench:connect, bench:fanout, bench:history, bench:retention).
 */
import * as Path from "node:path"
import { machine } from "../support/processStats.js"
import { build, root } from "../support/ServiceProcess.js"
import { writeChart, writeIntervalChart } from "./chart.js"
import * as Database from "./database.js"
import { baseOf, options, type Target } from "./options.js"
import * as Results from "./results.js"
import type { Round, Scenario } from "./scenario.js"
import { a } from "./scenarios/a.js"
import { b } from "./scenarios/b.js"
import { c } from "./scenarios/c.js"
import { d } from "./scenarios/d.js"
import { e } from "./scenarios/e.js"
import { fanout } from "./scenarios/fanout.js"
import { intervals } from "./scenarios/intervals.js"
import { polls } from "./scenarios/polls.js"
import { scale } from "./scenarios/scale.js"
import { wakeup } from "./scenarios/wakeup.js"
import { writers } from "./scenarios/writers.js"
import * as Table from "./table.js"
import { targetStarter } from "./targets.js"

/** In the order they run. */
const scenarios: ReadonlyArray<Scenario> = [a, fanout, b, c, d, e, wakeup, writers, polls, intervals, scale]

const log = (text: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}`)

build()
const database = await Database.open(options.durable)
const startTarget = await targetStarter(options)
const builds = Results.buildsOf(options)
const pooled = Results.pooled(options, builds, log)

const rounds: Array<Record<string, unknown>> = []
for (let index = 0; index < options.repeat; index++) {
  if (options.repeat > 1) log(`round ${index + 1} of ${options.repeat}`)
  const round: Round = {
    database,
    startTarget,
    index,
    quick: options.quick,
    seconds: options.seconds,
    scale: options.scale,
    log,
    perTarget: async <A>(compared: ReadonlyArray<Target>, f: (target: Target) => Promise<A>) => {
      const out: Partial<Record<Target, A>> = {}
      // Each of `compared` in turn, with the --workers targets where pollcast is.
      const chosen = compared.flatMap((each) => options.targets.filter((target) => (each === "pollcast" ? baseOf(target) : target) === each))
      const order = index % 2 === 0 ? chosen : [...chosen].reverse()
      for (const target of order) out[target] = await f(target)
      return out
    }
  }
  const results: Record<string, unknown> = {}
  for (const scenario of scenarios) {
    if (options.scenarios.has(scenario.name)) results[scenario.name] = await scenario.run(round)
  }
  rounds.push(results)
}

// The medians over this run's rounds and the pooled ones.
const roundTables = [...pooled.flatMap((earlier) => earlier.rounds), ...rounds].map((results) => Table.tableOf(options.targets, results))
const medians = Table.mediansOf(options.targets, roundTables)

const output = {
  machine: { ...machine(), postgres: database.postgresVersion, synchronousCommit: database.synchronousCommit },
  targets: options.targets,
  at: new Date().toISOString(),
  quick: options.quick,
  repeat: options.repeat,
  builds,
  /** The first round's results (all of them in `rounds` with --repeat); `table` holds the medians. */
  results: rounds[0]!,
  /** `table` holds the medians of this run's rounds and those of the runs in `pooled`. */
  ...(options.repeat > 1 ? { rounds, pooled: pooled.map((earlier) => earlier.name), table: medians } : {})
}
const file = Results.write(output)
// The charts draw pollcast, interval-only and the baseline: a run of other targets leaves them as they are.
const charted = (entries: ReadonlyArray<Partial<Record<Target, unknown>>>) =>
  entries.some((entry) => (["pollcast", "interval", "baseline"] as const).some((target) => entry[target] !== undefined))
const curves = output.results.d as Partial<Record<Target, unknown>> | undefined
if (curves !== undefined && charted([curves])) writeChart(Path.join(root, "docs", "bench-chart.svg"), output)
const sweep = output.results.intervals as { steps: ReadonlyArray<Partial<Record<Target, unknown>>> } | undefined
if (sweep !== undefined && charted(sweep.steps)) writeIntervalChart(Path.join(root, "docs", "bench-wakeup-chart.svg"), output)

Table.print({ targets: options.targets, targetNames: options.targetNames, roundTables, medians })
console.log(
  `\nmachine: ${output.machine.cpu}, ${output.machine.cores} cores, ${output.machine.memoryGiB} GiB, Node ${output.machine.node}, PostgreSQL ${database.postgresVersion} (synchronous_commit=${database.synchronousCommit}); load generator on the same machine`
)
console.log(`results: ${Path.relative(root, file)}`)

await database.close()
