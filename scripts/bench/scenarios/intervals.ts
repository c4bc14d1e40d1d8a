/** `intervals`: latency against POLL_INTERVAL, woken by NOTIFY and interval-only (docs/bench-wakeup-chart.svg). */
import type { Target } from "../options.js"
import { type RunResult, runOnce } from "../measure.js"
import type { Scenario } from "../scenario.js"

export const intervals: Scenario = {
  name: "intervals",
  run: async (round) => {
    const pollIntervals = round.quick ? [100, 1000] : [50, 100, 250, 500, 1000, 2000]
    const load = { clients: round.quick ? 200 : 1000, channels: 1, rate: 100, seconds: round.quick ? 4 : 8 }
    round.log(`(intervals) latency against POLL_INTERVAL ${pollIntervals.join(", ")} ms, ${load.clients} clients, ${load.rate} messages/s`)
    const steps: Array<{ pollIntervalMs: number } & Partial<Record<Target, RunResult>>> = []
    for (const interval of pollIntervals) {
      round.log(`  POLL_INTERVAL ${interval} ms`)
      steps.push({ pollIntervalMs: interval, ...(await round.perTarget(["pollcast", "interval"], (target) => runOnce(round, target, load, interval, 1))) })
    }
    return { load, steps }
  }
}
