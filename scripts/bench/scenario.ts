/**
 * What a scenario is given for one round (see --repeat), and the target sets the scenarios
 * compare. Each scenario (scenarios/*.ts, named as in --scenarios) returns its results for the
 * round: the JSON file keeps them, and table.ts reads them.
 */
import type { Bench } from "./measure.js"
import type { Options, Target } from "./options.js"

export interface Round extends Bench {
  /** From 0: which round of --repeat this is. */
  readonly index: number
  readonly quick: boolean
  /** How long the scenarios with a fixed load publish (--seconds). */
  readonly seconds: number
  /** `scale`'s subscribers, broadcasts and clients per load generator. */
  readonly scale: Options["scale"]
  /**
   * Runs `f` for each of `compared` that --targets allows, in reverse order every other round;
   * where `compared` has `pollcast`, for each --workers target too.
   */
  readonly perTarget: <A>(compared: ReadonlyArray<Target>, f: (target: Target) => Promise<A>) => Promise<Partial<Record<Target, A>>>
  readonly log: (text: string) => void
}

export interface Scenario {
  readonly name: string
  readonly run: (round: Round) => Promise<Record<string, unknown>>
}

// Access control is compared wherever the fan-out is measured; wake-up against interval-only where
// it matters (every scenario at POLL_INTERVAL 100 ms or more would do, at the cost of time).
export const againstBaseline: ReadonlyArray<Target> = ["pollcast", "pollcast-auth", "baseline", "compare"]
export const withInterval: ReadonlyArray<Target> = ["pollcast", "interval", "baseline", "compare"]
export const allTargets: ReadonlyArray<Target> = ["pollcast", "interval", "pollcast-auth", "baseline", "compare"]

/** The poll interval of the scenarios that measure latency: (a), (c), (e), `fanout`. */
export const pollIntervalMs = 100
