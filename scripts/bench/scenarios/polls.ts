/**
 * `polls`: other systems' plain INSERTs, one statement and transaction each (no group commit), to
 * few clients (a cheap fan-out): how many polls, and so queries, the notifications turn into.
 */
import { connectClients, type Delivery, measureDelivery } from "../measure.js"
import type { Scenario } from "../scenario.js"

/** The INSERT rates, in order: the table names them. */
export const insertRates = [100, 2000]

export const polls: Scenario = {
  name: "polls",
  run: async (round) => {
    const load = { clients: 10, channels: 1, rate: 100, seconds: round.seconds }
    round.log(`(polls) ${load.clients} clients, plain INSERTs at ${insertRates.join(" and ")} per second, POLL_INTERVAL 1000 millis`)
    return {
      load,
      pollIntervalMs: 1000,
      ...(await round.perTarget(["pollcast", "interval"], async (target) => {
        const run = await connectClients(round, target, load, 1000, 1)
        try {
          const steps: Array<Delivery> = []
          for (const rate of insertRates) {
            await run.generators.reset()
            steps.push(await measureDelivery(round, run.server, run.generators, run.database.name, { ...load, rate }, 1000, run.database.url))
          }
          return steps
        } finally {
          await run.stop()
        }
      }))
    }
  }
}
