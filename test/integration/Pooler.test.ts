/**
 * Nodes reaching PostgreSQL through a real PgBouncer in transaction mode (DATABASE_POOLER=transaction),
 * with POLL_INTERVAL at 10 seconds: they start, publish, poll, resume and stay prompt, woken by
 * their own commits and by the probe, since no LISTEN can pass the pooler. Skipped where Debian's
 * pgbouncer is not installed (.ci/run installs it).
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as GapFree from "../support/GapFree.js"
import * as PgBouncer from "../support/PgBouncer.js"
import * as SseClient from "../support/SseClient.js"
import * as TestClient from "../support/TestClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

const prompt = "3 seconds"

const insert = (channel: string, body: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`INSERT INTO messages (channel, author, body) VALUES (${channel}, 'other system', ${body})`)

/** A node on the database through the pooler, with POLL_INTERVAL 10 seconds. */
const pooledNode = (pooler: PgBouncer.PgBouncer, logs?: Array<string>) =>
  TestNode.start(
    { POLL_INTERVAL: "10 seconds", DATABASE_POOLER: "transaction" },
    logs === undefined ? { databaseUrl: pooler.url } : { databaseUrl: pooler.url, logs }
  )

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("through PgBouncer in transaction mode", (it) => {
  it.scoped.skipIf(!PgBouncer.available)("publishes, delivers a POST and a plain INSERT promptly on every node, and resumes", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const pooler = yield* PgBouncer.start(database.url)
      const logs: Array<string> = []
      const nodes = [yield* pooledNode(pooler, logs), yield* pooledNode(pooler)]
      expect(logs.filter((line) => line.includes("DATABASE_POOLER=transaction: not listening"))).toHaveLength(1)
      const stats = yield* Effect.promise(() => fetch(nodes[0]!.url("/stats")).then((response) => response.json()))
      expect(stats).toMatchObject({ wakeup: { state: "disabled" } })

      const clients = yield* Effect.all(nodes.map((node) => SseClient.connected(node.url("/events?channel=pooled"))))
      yield* TestClient.publish(nodes[0]!, { channel: "pooled", body: "posted" })
      for (const client of clients) yield* client.waitUntil(() => client.messages.length === 1, prompt)
      yield* insert("pooled", "inserted")
      for (const client of clients) yield* client.waitUntil(() => client.messages.length === 2, prompt)
      for (const client of clients) expect(client.bodies()).toEqual(["posted", "inserted"])

      // A client that had only the first resumes on the other node with what it missed.
      const resumed = yield* SseClient.connected(nodes[1]!.url("/events?channel=pooled"), {
        lastEventId: clients[0]!.messages[0]!.id
      })
      yield* resumed.waitUntil(() => resumed.messages.length === 1)
      expect(resumed.bodies()).toEqual(["inserted"])
    }))

  it.scoped.skipIf(!PgBouncer.available)("says so when DATABASE_POOLER is not set: its LISTEN hears nothing; the probe still delivers", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const pooler = yield* PgBouncer.start(database.url)
      const logs: Array<string> = []
      // Through the pooler the LISTEN succeeds, and its server session is then lent to others.
      const node = yield* TestNode.start({ POLL_INTERVAL: "10 seconds" }, { databaseUrl: pooler.url, logs })
      yield* SseClient.eventually(
        Effect.sync(() => logs.filter((line) => line.includes("hears nothing") && line.includes("DATABASE_POOLER=transaction"))),
        (lines) => lines.length === 1,
        "15 seconds",
        "the warning"
      )
      const client = yield* SseClient.connected(node.url("/events?channel=undeclared"))
      yield* insert("undeclared", "found by the probe")
      yield* client.waitUntil(() => client.messages.length === 1, prompt)
    }))

  it.scoped.skipIf(!PgBouncer.available)("passes the gap-free test: a row committed after later ones comes first, once", () =>
    Effect.flatMap(TestDatabase.TestDatabase, (database) =>
      Effect.flatMap(PgBouncer.start(database.url), (pooler) => GapFree.heldBack(pooledNode(pooler)))))

  it.scoped.skipIf(!PgBouncer.available)("passes the gap-free test under concurrent writers: same messages, same order, every client", () =>
    Effect.flatMap(TestDatabase.TestDatabase, (database) =>
      Effect.flatMap(PgBouncer.start(database.url), (pooler) => GapFree.concurrentWriters(pooledNode(pooler)))))
})
