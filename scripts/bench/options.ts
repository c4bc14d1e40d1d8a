/** `npm run bench`'s command line (the options are described in main.ts), read once and checked. */
import * as Path from "node:path"
import { argument, checkoutArgument, numberArgument } from "../support/arguments.js"
import { maxClientsPerGenerator } from "./generators.js"

/** The pollcast target run with WORKERS=N (--workers). */
export type WorkersTarget = `pollcast-w${number}`
export type Target = "pollcast" | "interval" | "pollcast-auth" | "baseline" | "compare" | WorkersTarget

export const scenarioNames = ["a", "b", "c", "d", "e", "fanout", "wakeup", "polls", "intervals", "writers", "scale"] as const
/** Every scenario but `scale`, which runs only when named: it opens 100,000 streams. */
const defaultScenarios = scenarioNames.filter((name) => name !== "scale")

const flag = (name: string) => process.argv.includes(`--${name}`)

/** --compare DIR: a pollcast built in another checkout, run beside the others. */
const compareDir = checkoutArgument("compare")
/** --pollcast DIR: the pollcast targets' build, if not this checkout's. */
const pollcastDir = checkoutArgument("pollcast")
const pollcastName = pollcastDir === undefined ? "pollcast" : `pollcast at ${Path.basename(pollcastDir)}`

/** --workers 1,2: the pollcast target once per count, as `pollcast-w1`, `pollcast-w2` (WORKERS=1, 2). */
const workerCounts = (argument("workers") ?? "").split(",").filter((count) => count !== "").map(Number)
for (const count of workerCounts) if (!Number.isInteger(count) || count < 1) throw new Error(`--workers takes whole numbers from 1, not ${count}`)
const workersTarget = (count: number): WorkersTarget => `pollcast-w${count}`
const workersTargets = [...new Set(workerCounts)].map(workersTarget)

/** N for `pollcast-wN`; undefined for the other targets. */
export const workersOf = (target: Target): number | undefined => {
  const match = /^pollcast-w(\d+)$/.exec(target)
  return match === null ? undefined : Number(match[1])
}
/** A `pollcast-wN` target is `pollcast` with its WORKERS set: it runs wherever `pollcast` does. */
export const baseOf = (target: Target): Target => (workersOf(target) === undefined ? target : "pollcast")

const targetNames: Record<Target, string> = {
  pollcast: pollcastName,
  interval: "interval-only",
  "pollcast-auth": "pollcast, auth on",
  baseline: "baseline",
  compare: `pollcast at ${compareDir === undefined ? "" : Path.basename(compareDir)}`
}
// With --workers, the targets are the worker counts (and compare) unless --targets names others.
const givenTargets = argument("targets")?.split(",") as Array<Target> | undefined
for (const target of [...workersTargets, ...(givenTargets ?? [])]) {
  if (workersOf(target) !== undefined) targetNames[target] = `${pollcastName} W=${workersOf(target)}`
}
const targets: Array<Target> = [
  ...(givenTargets ?? (workersTargets.length > 0
    ? []
    : ["pollcast", "interval", "pollcast-auth", "baseline"] as Array<Target>)),
  ...workersTargets.filter((target) => !(givenTargets ?? []).includes(target)),
  ...(givenTargets === undefined && compareDir !== undefined ? ["compare" as const] : [])
]
for (const target of targets) if (!(target in targetNames)) throw new Error(`Unknown target ${target}`)
if (targets.includes("compare") && compareDir === undefined) throw new Error("The target compare needs --compare DIR")

const quick = flag("quick")

const clientsPerGenerator = numberArgument("clients-per-generator", 15_000)
if (!(clientsPerGenerator >= 1 && clientsPerGenerator <= maxClientsPerGenerator)) {
  throw new Error(`--clients-per-generator must be between 1 and ${maxClientsPerGenerator}`)
}

export const options = {
  compareDir,
  pollcastDir,
  targets,
  targetNames,
  scenarios: new Set(argument("scenarios")?.split(",") ?? defaultScenarios),
  quick,
  /**
   * The embedded PostgreSQL runs with synchronous_commit=off unless --durable: this machine's disk
   * takes up to ~100 ms to fsync now and then, which would show up in every latency figure of both
   * servers alike and hide theirs. Commits are still written, just not waited for.
   */
  durable: flag("durable"),
  /** --profile DIR: run the servers under --cpu-prof, writing their profiles to DIR. */
  profileDir: argument("profile"),
  traceGc: flag("trace-gc"),
  /**
   * --repeat N: every scenario N times, the targets in turn each round (in reverse order every other
   * round, so that none always runs first or last); the table shows each figure's median over the
   * rounds. One run's figures spread more than the differences some comparisons look for (a p99 by
   * ±20% between runs of one build): a median of interleaved runs is what can tell 5% apart.
   */
  repeat: Math.max(1, numberArgument("repeat", 1)),
  /** --seconds N: how long (a), (b), (c), `fanout`, `wakeup`, `writers` and `polls` publish (longer: steadier tail percentiles). */
  seconds: numberArgument("seconds", quick ? 5 : 12),
  /** --pool FILE,...: earlier runs' results, whose rounds join this run's (see results.ts). */
  pool: (argument("pool") ?? "").split(",").filter((name) => name !== ""),
  /** `scale`: --subscribers, --broadcasts, and how many streams each load generator holds. */
  scale: {
    subscribers: numberArgument("subscribers", 100_000),
    broadcasts: numberArgument("broadcasts", 10),
    clientsPerGenerator
  }
}

export type Options = typeof options
