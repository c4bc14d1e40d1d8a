/** (d) Clients per node before the p99 passes 1 s: steps of clients at 20 messages/s, POLL_INTERVAL 250 ms. */
import { type RunResult, runOnce } from "../measure.js"
import { type Scenario, withInterval } from "../scenario.js"

export interface Curve {
  readonly maxClientsWithinP99OneSecond: number
  readonly curve: Array<{ clients: number } & RunResult>
}

export const d: Scenario = {
  name: "d",
  run: async (round) => {
    const steps = round.quick ? [1000, 5000, 10_000] : [1000, 2500, 5000, 10_000, 15_000, 19_000]
    const rate = 20
    // Every client costs a socket write per interval with news: a node meant for many clients
    // polls less often than (a)'s 100 ms.
    const stepPollIntervalMs = 250
    round.log(`(d) clients per node before p99 passes 1 s, at ${rate} messages/s, POLL_INTERVAL ${stepPollIntervalMs} millis: ${steps.join(", ")}`)
    return {
      rate,
      pollIntervalMs: stepPollIntervalMs,
      ...(await round.perTarget(withInterval, async (target): Promise<Curve> => {
        const curve: Array<{ clients: number } & RunResult> = []
        for (const clients of steps) {
          round.log(`  ${target}: ${clients} clients`)
          const result = await runOnce(round, target, { clients, channels: 1, rate, seconds: round.quick ? 5 : 8 }, stepPollIntervalMs, 3)
          curve.push({ clients, ...result })
          if (!(result.delivery.latencyMs.p99 <= 1000 && result.delivery.complete)) break
        }
        const held = curve.filter((step) => step.delivery.latencyMs.p99 <= 1000 && step.delivery.complete)
        return { maxClientsWithinP99OneSecond: held.length === 0 ? 0 : held[held.length - 1]!.clients, curve }
      }))
    }
  }
}
