/** (a) 1,000 clients on one channel, 100 messages/s, POLL_INTERVAL 100 ms: latency and its cost. */
import { runOnce } from "../measure.js"
import { againstBaseline, pollIntervalMs, type Scenario } from "../scenario.js"

export const a: Scenario = {
  name: "a",
  run: async (round) => {
    const load = { clients: 1000, channels: 1, rate: 100, seconds: round.seconds }
    round.log(`(a) ${load.clients} clients, ${load.rate} messages/s, POLL_INTERVAL ${pollIntervalMs} millis`)
    return {
      load,
      pollIntervalMs,
      ...(await round.perTarget(againstBaseline, (target) => runOnce(round, target, load, pollIntervalMs, 3)))
    }
  }
}
