/**
 * (e) Saturation with 1,000 clients: the rate doubled until delivery falls behind (incomplete, a
 * p99 over 1 s, or under 90% of the rate published), then the gap halved twice.
 */
import { connectClients, type Delivery, measureDelivery } from "../measure.js"
import { allTargets, pollIntervalMs, type Scenario } from "../scenario.js"

export interface Saturation {
  readonly highestSustainedDeliveriesPerSecond: number
  readonly steps: Array<Delivery>
}

export const e: Scenario = {
  name: "e",
  run: async (round) => {
    const clients = 1000
    const rates = round.quick ? [100, 400, 1600] : [100, 200, 400, 800, 1600, 3200, 6400]
    round.log(`(e) saturation with ${clients} clients: ${rates.join(", ")} messages/s until delivery falls behind, then two halvings of the gap`)
    return {
      clients,
      pollIntervalMs,
      ...(await round.perTarget(allTargets, async (target): Promise<Saturation> => {
        const load = { clients, channels: 1, rate: rates[0]!, seconds: round.quick ? 4 : 8 }
        const run = await connectClients(round, target, load, pollIntervalMs, 1)
        const steps: Array<Delivery> = []
        const sustainedAt = (delivery: Delivery) =>
          delivery.complete && delivery.latencyMs.p99 <= 1000 && delivery.publishedRate >= 0.9 * delivery.offeredRate
        const step = async (rate: number) => {
          round.log(`  ${target}: ${rate} messages/s`)
          await run.generators.reset()
          const delivery = await measureDelivery(round, run.server, run.generators, run.database.name, { ...load, rate }, pollIntervalMs)
          steps.push(delivery)
          return sustainedAt(delivery)
        }
        try {
          // Doubling the rate until delivery falls behind, then halving the gap between the last rate
          // sustained and the first not, twice: the limit to within a quarter of the last doubling.
          let held: number | undefined
          let failed: number | undefined
          for (const rate of rates) {
            if (await step(rate)) held = rate
            else {
              failed = rate
              break
            }
          }
          for (let i = 0; i < (round.quick ? 0 : 2) && held !== undefined && failed !== undefined; i++) {
            const rate = Math.round((held + failed) / 2)
            if (await step(rate)) held = rate
            else failed = rate
          }
        } finally {
          await run.stop()
        }
        const sustained = steps.filter(sustainedAt)
        return {
          highestSustainedDeliveriesPerSecond: Math.max(0, ...sustained.map((step) => step.deliveriesPerSecond)),
          steps
        }
      }))
    }
  }
}
