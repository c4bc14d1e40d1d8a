/**
 * The soak's fault schedule: which fault, when, for how long and against what, derived from the
 * seed alone, so that `--seed N` with the same length and node count replays the same schedule.
 * (The workload's timing still varies from run to run; the faults and their targets do not.)
 */
import { PCGRandom } from "effect/Utils"

export const faultKinds = [
  "node-kill",
  "node-term",
  "node-freeze",
  "db-cut",
  "db-stall",
  "db-restart",
  "reader-stop",
  "burst",
  "resume-old"
] as const
export type FaultKind = typeof faultKinds[number]

/** Not a fault but planned with them: the plain-SQL writer keeps a transaction open. */
export type EventKind = FaultKind | "long-transaction"

export interface PlannedFault {
  readonly index: number
  readonly kind: EventKind
  /** Milliseconds from the start of the run. */
  readonly at: number
  /** How long the fault lasts (down time, freeze, outage, pause, burst, open transaction). */
  readonly duration: number
  /** The node it strikes (node faults), or, for database faults, one node's link or all. */
  readonly node?: number | "all"
  /** The subscriber that stops reading. */
  readonly subscriber?: number
  /** resume-old: the channels of the new client ("all", or how many), and where it resumes from, as a fraction of the time elapsed. */
  readonly channels?: "all" | number
  readonly age?: number
  /** db-stall: whether the stall ends with the connections cut rather than let through. */
  readonly endsCut?: boolean
}

export interface PlanOptions {
  readonly seed: number
  readonly durationMs: number
  readonly nodes: number
  /** How many of the first subscribers reader-stop may pick (those following every channel). */
  readonly readers: number
  /** One of each kind within about a minute, at the short end of each range. */
  readonly short: boolean
  /** With DATABASE_URL the soak cannot restart the server: db-restart is left out. */
  readonly canRestartDatabase: boolean
}

const seconds = (value: number) => value * 1000

export const plan = (options: PlanOptions): ReadonlyArray<PlannedFault> => {
  const random = new PCGRandom(options.seed)
  const between = (min: number, max: number) => min + random.number() * (max - min)
  const integer = (max: number) => random.integer(max)
  const kinds = faultKinds.filter((kind) => kind !== "db-restart" || options.canRestartDatabase)

  // Faults start after a warm-up and stop early enough to end before the writers do.
  const warmUp = seconds(options.short ? 5 : 20)
  const coolDown = seconds(options.short ? 20 : 45)
  const active = Math.max(seconds(10), options.durationMs - warmUp - coolDown)
  // Full runs: every kind at least twice, and about one fault every 18 s; short runs: each once.
  const repeats = options.short ? 1 : 2
  const count = options.short ? kinds.length : Math.max(repeats * kinds.length, Math.floor(active / seconds(18)))
  const extras = kinds.filter((kind) => kind !== "resume-old")
  const chosen: Array<FaultKind> = kinds.flatMap((kind) => Array.from({ length: repeats }, () => kind))
  while (chosen.length < count) chosen.push(extras[integer(extras.length)]!)
  // Fisher-Yates, on the seed.
  for (let i = chosen.length - 1; i > 0; i--) {
    const j = integer(i + 1)
    ;[chosen[i], chosen[j]] = [chosen[j]!, chosen[i]!]
  }
  // A reader that stops is cut off only once its node's socket buffers are full (megabytes, tens
  // of seconds): in a short run it goes first, to have the time.
  if (options.short) chosen.sort((a, b) => Number(b === "reader-stop") - Number(a === "reader-stop"))

  const slot = active / chosen.length
  const faults = chosen.map((kind, i) => {
    const at = Math.round(warmUp + (i + 0.5 + between(-0.4, 0.4)) * slot)
    const base = { kind, at }
    const link = () => (random.number() < 0.6 ? "all" as const : integer(options.nodes))
    switch (kind) {
      case "node-kill":
        return { ...base, node: integer(options.nodes), duration: seconds(options.short ? between(1, 2) : between(1, 4)) }
      case "node-term":
        return { ...base, node: integer(options.nodes), duration: seconds(options.short ? between(1, 2) : between(1, 3)) }
      case "node-freeze":
        return { ...base, node: integer(options.nodes), duration: seconds(10) }
      case "db-cut":
        return { ...base, node: link(), duration: seconds(options.short ? between(5, 8) : between(5, 20)) }
      case "db-stall":
        return {
          ...base,
          node: link(),
          duration: seconds(options.short ? between(5, 8) : between(5, 20)),
          endsCut: random.number() < 0.5
        }
      case "db-restart":
        return { ...base, duration: seconds(options.short ? between(1, 3) : between(1, 5)) }
      case "reader-stop":
        // The longest it stops reading; it reads again as soon as its node has cut it off.
        return {
          ...base,
          subscriber: integer(options.readers),
          duration: Math.min(seconds(options.short ? 50 : 90), options.durationMs - at - seconds(5))
        }
      case "burst":
        return { ...base, duration: seconds(options.short ? 3 : between(3, 6)) }
      case "resume-old":
        return { ...base, duration: 0, channels: random.number() < 0.5 ? "all" as const : 1 + integer(2), age: between(0.05, 0.5) }
    }
  })

  // The SQL writer holds a transaction open now and then: every 40 s or so (once in a short run).
  const longTransactions = options.short ? 1 : Math.max(2, Math.floor(active / seconds(40)))
  const held = Array.from({ length: longTransactions }, (_, i) => ({
    kind: "long-transaction" as const,
    at: Math.round(warmUp + (i + 0.5 + between(-0.4, 0.4)) * (active / longTransactions)),
    duration: seconds(options.short ? 3 : between(2, 8))
  }))

  return [...faults, ...held]
    .map((fault) => ({ ...fault, duration: Math.round(fault.duration) }))
    .sort((a, b) => a.at - b.at)
    .map((fault, index) => ({ index, ...fault }))
}
