/**
 * `fanout`: (a)'s load, for comparing builds by their fan-out (auth on and off, --compare). In (a)
 * a process's latencies follow its polls per second (how wake-ups happen to coalesce), which differ
 * from process to process by more than 5%. Here polls come at fixed times and messages at random
 * ones, the same for each target of a round, so that every process's messages wait for their poll
 * a uniformly random part of the interval alike; and they are plain INSERTs, so that what a POST
 * costs (measured in (a) and by bench:api) stays out of it.
 */
import { runOnce } from "../measure.js"
import { pollIntervalMs, type Scenario } from "../scenario.js"

export const fanout: Scenario = {
  name: "fanout",
  run: async (round) => {
    const load = { clients: 1000, channels: 1, rate: 100, seconds: round.seconds }
    const options = { intervalOnly: true, inserts: true, poissonSeed: round.index + 1 }
    round.log(`(fanout) ${load.clients} clients, INSERTs at random times, ${load.rate}/s on average, polls every ${pollIntervalMs} millis only`)
    return {
      load,
      pollIntervalMs,
      ...(await round.perTarget(["pollcast", "pollcast-auth", "compare"], (target) => runOnce(round, target, load, pollIntervalMs, 3, options)))
    }
  }
}
