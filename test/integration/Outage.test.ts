/**
 * A node cut off from its database keeps its clients, answers 503 where it needs the database,
 * and once the database is back delivers everything written in the meantime.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as SseClient from "../support/SseClient.js"
import * as TcpProxy from "../../scripts/support/TcpProxy.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

const status = (url: string, init?: RequestInit) => Effect.promise(() => fetch(url, init).then((response) => response.status))

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("database outage", (it) => {
  it.scoped("keeps event streams open, retries, and then delivers what was written meanwhile", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const database = yield* TestDatabase.TestDatabase
      const proxy = yield* TcpProxy.start(database.url)
      const node = yield* TestNode.start({ HEARTBEAT_INTERVAL: "200 millis" }, { databaseUrl: proxy.url })
      const channel = "outage"
      const publish = (body: string) =>
        status(node.url("/messages"), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ channel, body })
        })
      const client = yield* SseClient.connected(node.url(`/events?channel=${channel}`))
      expect(yield* publish("before")).toBe(201)
      yield* client.waitUntil(() => client.messages.length === 1)

      yield* proxy.cut
      // The node cannot write or read, and says so.
      expect(yield* publish("lost?")).toBe(503)
      expect(yield* status(node.url("/position"))).toBe(503)
      yield* SseClient.eventually(status(node.url("/readyz")), (code) => code === 503, "15 seconds", "readyz to fail")
      expect(yield* status(node.url("/healthz"))).toBe(200)
      // Other systems, which still reach the database, go on writing.
      for (let i = 1; i <= 5; i++) {
        yield* sql`INSERT INTO messages (channel, author, body) VALUES (${channel}, 'elsewhere', ${`during ${i}`})`
      }
      yield* Effect.sleep("1 second")
      expect(client.bodies()).toEqual(["before"])

      yield* proxy.restore
      yield* client.waitUntil(() => client.messages.length >= 6, "20 seconds")
      yield* Effect.sleep("250 millis")
      expect(client.bodies()).toEqual(["before", "during 1", "during 2", "during 3", "during 4", "during 5"])
      // The same connection all along: the outage never reached the client.
      expect(client.opens()).toBe(1)
      yield* SseClient.eventually(status(node.url("/readyz")), (code) => code === 200, "15 seconds", "readyz to recover")
      expect(yield* publish("after")).toBe(201)
    }))

  it.scoped("answers 503 when the link to the database stalls without closing, and recovers once it flows", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const proxy = yield* TcpProxy.start(database.url)
      const node = yield* TestNode.start({ DATABASE_TIMEOUT: "1 second" }, { databaseUrl: proxy.url })
      const publish = (body: string) =>
        Effect.promise(() =>
          fetch(node.url("/messages"), {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ channel: "stall", body }),
            signal: AbortSignal.timeout(15_000)
          }).then((response) => response.status, () => "no answer within 15 seconds")
        )
      const client = yield* SseClient.connected(node.url("/events?channel=stall"))
      expect(yield* publish("before")).toBe(201)
      yield* client.waitUntil(() => client.messages.length === 1)

      // The network keeps the connections but delivers nothing: no error, no close.
      yield* proxy.stall
      expect(yield* publish("during")).toBe(503)
      yield* SseClient.eventually(status(node.url("/readyz")), (code) => code === 503, "15 seconds", "readyz to fail")

      yield* proxy.restore
      yield* SseClient.eventually(publish("after"), (code) => code === 201, "20 seconds", "a POST to succeed again")
      yield* client.waitUntil(() => client.bodies().includes("after"), "20 seconds")
      // Only what was confirmed, once each; the 503 may or may not have been stored.
      expect(client.bodies().filter((body) => body !== "during")).toEqual(["before", ...client.bodies().filter((body) => body === "after")])
      expect(client.opens()).toBe(1)
    }))

  it.scoped("with writes failing and reads working (a full disk), is unready and logs one line, not one per request", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const logs: Array<string> = []
      const node = yield* TestNode.start({}, { logs })
      const publish = status(node.url("/messages"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ channel: "full", body: "hello" })
      })
      expect(yield* publish).toBe(201)
      expect(yield* status(node.url("/readyz"))).toBe(200)

      // What PostgreSQL answers a write on a full disk; reads still work.
      yield* sql`
        CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'could not extend file "base/16384/16390": No space left on device' USING ERRCODE = 'disk_full';
        END $$`
      yield* sql`CREATE TRIGGER disk_full BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION disk_full()`
      yield* Effect.addFinalizer(() => sql`DROP TRIGGER IF EXISTS disk_full ON messages`.pipe(Effect.orDie))
      const answers = yield* Effect.forEach(Array.from({ length: 200 }), () => publish, { concurrency: 10 })
      expect(answers.every((code) => code === 503)).toBe(true)
      expect(yield* status(node.url("/messages?channel=full"))).toBe(200)
      const readiness = yield* Effect.promise(() => fetch(node.url("/readyz")).then(async (response) => ({ status: response.status, body: await response.json() })))
      expect(readiness).toMatchObject({ status: 503, body: { database: "reachable", writes: "failing" } })
      expect(logs.filter((line) => /Answer(ing|ed) 503/.test(line)), "log lines about the 503s").toHaveLength(1)

      // Once writes succeed again, so does readiness.
      yield* sql`DROP TRIGGER disk_full ON messages`
      expect(yield* publish).toBe(201)
      expect(yield* status(node.url("/readyz"))).toBe(200)
    }))
})
