/** (b) 10,000 clients on one channel (5,000 with --quick), idle then 20 messages/s, at the default POLL_INTERVAL. */
import { runOnce } from "../measure.js"
import { againstBaseline, type Scenario } from "../scenario.js"

export const b: Scenario = {
  name: "b",
  run: async (round) => {
    // The service's default interval: what a node holding this many clients would run with.
    const defaultPollIntervalMs = 1000
    const load = { clients: round.quick ? 5000 : 10_000, channels: 1, rate: 20, seconds: round.seconds }
    round.log(`(b) ${load.clients} clients on one channel, idle then ${load.rate} messages/s, POLL_INTERVAL ${defaultPollIntervalMs} millis`)
    return {
      load,
      pollIntervalMs: defaultPollIntervalMs,
      ...(await round.perTarget(againstBaseline, (target) => runOnce(round, target, load, defaultPollIntervalMs, 10)))
    }
  }
}
