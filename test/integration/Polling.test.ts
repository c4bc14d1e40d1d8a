/**
 * Guarantee 2 against a real PostgreSQL: the database sees one query per poll interval per node,
 * and one per probe interval, whatever the number of clients, and a backlog is drained by polling
 * again at once.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Clock, type Duration, Effect } from "effect"
import * as SseClient from "../support/SseClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

/** Transactions committed on this file's database, as PostgreSQL counts them (every statement
 * the node runs outside a transaction is one). Backends report at most once a second. */
const committed = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const database = yield* TestDatabase.TestDatabase
  const rows = yield* sql<{ count: string }>`
    SELECT xact_commit::text AS count FROM pg_stat_database WHERE datname = ${database.name}`
  return Number(rows[0]!.count)
}).pipe(Effect.orDie)

const queriesOf = (node: TestNode.TestNode) =>
  Effect.promise(async () => (await (await fetch(node.url("/stats"))).json()) as { polls: number; probes: number })

/**
 * Polls counted by the node, and transactions counted by PostgreSQL, over `window`. The database's
 * count lags by up to a second (backends report at most once a second), so the two agree to
 * within about a second's worth of polls. `millis` is the window as the test saw it, from before
 * the first /stats request to after the second's answer: the node's own window lies inside it,
 * and on a loaded machine it is longer than `window`.
 */
const measure = (node: TestNode.TestNode, window: Duration.DurationInput) =>
  Effect.gen(function*() {
    yield* Effect.sleep("1100 millis") // let earlier activity reach the statistics
    const started = yield* Clock.currentTimeMillis
    const before = yield* queriesOf(node)
    const transactions = yield* committed
    yield* Effect.sleep(window)
    const after = yield* queriesOf(node)
    const millis = (yield* Clock.currentTimeMillis) - started
    return {
      millis,
      polls: after.polls - before.polls,
      probes: after.probes - before.probes,
      // The first statistics read is itself a transaction.
      transactions: (yield* committed) - transactions - 1
    }
  })

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("polling", (it) => {
  it.scoped("makes one query per interval for all channels, with no clients or with two hundred", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start({ POLL_INTERVAL: "200 millis", WAKEUP_PROBE_INTERVAL: "100 millis" })
      const idle = yield* measure(node, "3 seconds")

      yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => node.url(i % 4 === 0 ? "/events" : `/events?channel=load-${i % 20}`)),
        (url) => SseClient.connected(url),
        { concurrency: 20 }
      )
      const busy = yield* measure(node, "3 seconds")

      // About 15 polls and 30 probes in 3 seconds either way, and the database saw those queries
      // and no more: not one per client or per channel (that would be hundreds). The interval's
      // ticks fall on fixed boundaries, at most floor(millis / 200) + 1 of them in the window as
      // measured. Besides those, the count may take in a poll that began before the window (under
      // way at its start), and a tick due before the window that fired late inside it
      // (Schedule.fixed runs a late tick at once, then keeps to its boundaries). CI, loaded,
      // counted 17 in a window of 3,000-3,199 ms.
      for (const run of [idle, busy]) {
        expect(run.polls).toBeGreaterThanOrEqual(8)
        expect(run.polls).toBeLessThanOrEqual(Math.floor(run.millis / 200) + 3)
        expect(run.probes).toBeGreaterThanOrEqual(15)
        expect(run.probes).toBeLessThanOrEqual(Math.floor(run.millis / 100) + 1)
        // The database's count is off by what its backends had not yet reported at either end,
        // at most about a second's worth of the node's 15 queries a second each way (seen: -11 to
        // +12 on a loaded machine).
        expect(Math.abs(run.transactions - run.polls - run.probes)).toBeLessThanOrEqual(25)
      }
    }))

  it.scoped("drains a backlog by polling again at once while batches come back full", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const node = yield* TestNode.start({ POLL_INTERVAL: "3 seconds", POLL_BATCH_SIZE: "100" })
      const client = yield* SseClient.connected(node.url("/events?channel=backlog"))
      const polls = yield* Effect.map(queriesOf(node), (queries) => queries.polls)
      yield* sql`
        INSERT INTO messages (channel, author, body)
        SELECT 'backlog', 'bulk', 'message ' || n FROM generate_series(1, 1000) AS n`
      // Ten full batches; at one batch per tick that would take 30 seconds.
      yield* client.waitUntil(() => client.messages.length === 1000, "6 seconds")
      expect(client.bodies()).toEqual(Array.from({ length: 1000 }, (_, i) => `message ${i + 1}`))
      expect((yield* Effect.map(queriesOf(node), (queries) => queries.polls)) - polls).toBeLessThanOrEqual(13)
    }))
})
