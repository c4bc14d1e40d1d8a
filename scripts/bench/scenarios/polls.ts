/**
 * `polls`: how many polls, and so queries, a node makes with few clients (a cheap fan-out): over a
 * fixed window at idle, under POSTs, and under other systems' plain INSERTs, one statement and
 * transaction each (no group commit). Polls are pollcast_polls_total summed over the node's
 * processes: a node of several (--workers) still has one poller, so its figures must be one
 * process's.
 */
import { connectClients, type Delivery, measureDelivery, now, pollerStats, sleep } from "../measure.js"
import type { Scenario } from "../scenario.js"
import { round } from "../statistics.js"

/** The POST rate, then the INSERT rates, in order: the table names them. */
export const postRate = 100
export const insertRates = [100, 2000]

export interface IdlePolls {
  readonly seconds: number
  /** Undefined for a server without a poll count (the baseline). */
  readonly pollsPerSecond: number | undefined
  readonly queriesPerSecond: number
}

export interface PollsRun {
  readonly idle: IdlePolls
  readonly posts: Delivery
  readonly inserts: ReadonlyArray<Delivery>
}

export const polls: Scenario = {
  name: "polls",
  run: async (bench) => {
    const load = { clients: 10, channels: 1, rate: 100, seconds: bench.seconds }
    bench.log(
      `(polls) ${load.clients} clients, POLL_INTERVAL 1000 millis: idle for ${load.seconds} s, POSTs at ${postRate}/s, plain INSERTs at ${insertRates.join(" and ")} per second`
    )
    return {
      load,
      pollIntervalMs: 1000,
      ...(await bench.perTarget(["pollcast", "interval"], async (target): Promise<PollsRun> => {
        const run = await connectClients(bench, target, load, 1000, 1)
        try {
          const statsBefore = await pollerStats(run.server)
          const queriesBefore = await bench.database.transactions(run.database.name)
          const started = now()
          await sleep(load.seconds * 1000)
          const statsAfter = await pollerStats(run.server)
          const elapsed = (now() - started) / 1000
          await sleep(1100) // statistics reach pg_stat_database at most once a second
          const idle: IdlePolls = {
            seconds: load.seconds,
            pollsPerSecond: statsBefore === undefined || statsAfter === undefined
              ? undefined
              : round((statsAfter.polls - statsBefore.polls) / elapsed, 2),
            queriesPerSecond: round(((await bench.database.transactions(run.database.name)) - queriesBefore - 1) / (elapsed + 1.1), 2)
          }
          await run.generators.reset()
          const posts = await measureDelivery(bench, run.server, run.generators, run.database.name, { ...load, rate: postRate }, 1000)
          const inserts: Array<Delivery> = []
          for (const rate of insertRates) {
            await run.generators.reset()
            inserts.push(await measureDelivery(bench, run.server, run.generators, run.database.name, { ...load, rate }, 1000, run.database.url))
          }
          return { idle, posts, inserts }
        } finally {
          await run.stop()
        }
      }))
    }
  }
}
