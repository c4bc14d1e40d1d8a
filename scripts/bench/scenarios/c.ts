/** (c) 1,000 clients over 100 channels, 100 messages/s, POLL_INTERVAL 100 ms. */
import { runOnce } from "../measure.js"
import { againstBaseline, pollIntervalMs, type Scenario } from "../scenario.js"

export const c: Scenario = {
  name: "c",
  run: async (round) => {
    const load = { clients: 1000, channels: 100, rate: 100, seconds: round.seconds }
    round.log(`(c) ${load.clients} clients over ${load.channels} channels, ${load.rate} messages/s`)
    return { load, pollIntervalMs, ...(await round.perTarget(againstBaseline, (target) => runOnce(round, target, load, pollIntervalMs, 3))) }
  }
}
