/**
 * `wakeup`: (a)'s load at the default interval, where waiting for the poll would cost half a
 * second; then, on the same clients, 2,000 messages/s: how many polls the notifications turn
 * into. Idle for 10 s first: statistics arrive once a second, so a short window cannot tell
 * 1 query/s apart.
 */
import { connectClients, type Delivery, measureDelivery } from "../measure.js"
import { type Scenario, withInterval } from "../scenario.js"

export const wakeup: Scenario = {
  name: "wakeup",
  run: async (round) => {
    const wakeupPollIntervalMs = 1000
    const load = { clients: 1000, channels: 1, rate: 100, seconds: round.seconds }
    const burstRate = 2000
    round.log(`(wakeup) ${load.clients} clients, ${load.rate} then ${burstRate} messages/s, POLL_INTERVAL ${wakeupPollIntervalMs} millis`)
    return {
      load,
      burstRate,
      pollIntervalMs: wakeupPollIntervalMs,
      ...(await round.perTarget(withInterval, async (target) => {
        const run = await connectClients(round, target, load, wakeupPollIntervalMs, 10)
        try {
          const delivery = await measureDelivery(round, run.server, run.generators, run.database.name, load, wakeupPollIntervalMs)
          let burst: Delivery | undefined
          if (target !== "baseline") {
            round.log(`  ${target}: ${burstRate} messages/s`)
            await run.generators.reset()
            burst = await measureDelivery(round, run.server, run.generators, run.database.name, { ...load, rate: burstRate }, wakeupPollIntervalMs)
          }
          return { connection: run.connection, delivery, burst }
        } finally {
          await run.stop()
        }
      }))
    }
  }
}
