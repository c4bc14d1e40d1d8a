/**
 * The bench's results file (bench-results/bench-<time>.json), what each pollcast target ran (so
 * that runs are pooled only when they measured the same code), and the rounds of earlier runs
 * that --pool adds to this one's.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { machine } from "../support/processStats.js"
import { root } from "../support/ServiceProcess.js"
import type { Load } from "./measure.js"
import type { Options, Target } from "./options.js"

/**
 * What a build is: the git tree of src/ and the lock file of its checkout, and a hash of any
 * uncommitted change to src/; undefined where the checkout is not a git one.
 */
const buildOf = (directory: string) => {
  const git = (...args: Array<string>) =>
    ChildProcess.execFileSync("git", ["-C", directory, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  try {
    const changes = git("diff", "HEAD", "--", "src")
    return {
      src: git("rev-parse", "HEAD:src"),
      lockfile: git("rev-parse", "HEAD:package-lock.json"),
      ...(changes === "" ? {} : { uncommitted: Crypto.createHash("sha256").update(changes).digest("hex").slice(0, 16) })
    }
  } catch {
    // Not a git checkout: the run says nothing of its build, and cannot be pooled with another.
    return undefined
  }
}
export type Builds = Partial<Record<Target, ReturnType<typeof buildOf>>>

/** The build of each target but the baseline. */
export const buildsOf = (options: Options): Builds => {
  const builds: Builds = {}
  for (const target of options.targets) {
    if (target === "baseline") continue
    builds[target] = buildOf(target === "compare" ? options.compareDir! : options.pollcastDir ?? root)
  }
  return builds
}

/**
 * --pool FILE,...: earlier runs' rounds, for more of them than one sitting allows. A run's figures
 * vary mostly from one server process to the next, so more rounds narrow the intervals, however
 * they were split between runs; the runs must have measured the same builds on the same machine.
 */
export const pooled = (options: Options, builds: Builds, log: (text: string) => void) => {
  const runs = options.pool.map((name) => {
    const earlier = JSON.parse(Fs.readFileSync(name, "utf8")) as {
      targets: Array<Target>
      builds?: Builds
      machine: { cpu: string; cores: number }
      quick: boolean
      rounds?: Array<Record<string, unknown>>
    }
    if (earlier.rounds === undefined) throw new Error(`${name} has no rounds: it was not run with --repeat`)
    const missing = options.targets.filter((target) => !earlier.targets.includes(target))
    if (missing.length > 0) throw new Error(`${name} did not run ${missing.join(", ")}`)
    if (earlier.machine.cpu !== machine().cpu || earlier.machine.cores !== machine().cores) {
      throw new Error(`${name} ran on another machine (${earlier.machine.cpu}, ${earlier.machine.cores} cores)`)
    }
    if (earlier.builds === undefined) {
      log(`${name} was written before builds were recorded: pooled on the word of whoever asked for it`)
    } else {
      for (const target of Object.keys(builds) as Array<Target>) {
        const build = builds[target]
        if (build === undefined || JSON.stringify(earlier.builds[target]) !== JSON.stringify(build)) {
          throw new Error(`${name} measured another build of ${target}, or this one is not a git checkout`)
        }
      }
    }
    // The scenarios of this run, from each of its rounds.
    const kept = earlier.rounds.map((each) => Object.fromEntries(Object.entries(each).filter(([scenario]) => options.scenarios.has(scenario))))
    const absent = [...options.scenarios].filter((scenario) => kept.some((each) => !(scenario in each)))
    if (absent.length > 0) throw new Error(`${name} did not run ${absent.join(", ")} in every round`)
    const publishedFor = (each: Record<string, unknown>) =>
      ["a", "b", "c", "fanout"].flatMap((scenario) => {
        const entry = each[scenario] as { load: Load } | undefined
        return entry === undefined ? [] : [entry.load.seconds]
      })
    if (earlier.quick !== options.quick || kept.some((each) => publishedFor(each).some((published) => published !== options.seconds))) {
      throw new Error(`${name} ran another load (--quick or --seconds)`)
    }
    return { name: Path.relative(root, Path.resolve(name)), rounds: kept }
  })
  if (runs.length > 0 && options.repeat === 1) throw new Error("--pool needs --repeat")
  return runs
}

/** Writes `output` to bench-results/, returning the file's path. */
export const write = (output: { readonly at: string }) => {
  Fs.mkdirSync(Path.join(root, "bench-results"), { recursive: true })
  const file = Path.join(root, "bench-results", `bench-${output.at.replace(/[:.]/g, "-")}.json`)
  Fs.writeFileSync(file, JSON.stringify(output, null, 2))
  return file
}
