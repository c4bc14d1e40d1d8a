/**
 * A database dropped and created again empty under a running node: the node creates its tables
 * again, as a start would, and goes on delivering, instead of answering 503 for good.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { inject } from "vitest"
import * as Database from "../../src/Storage/Database.js"
import * as EmbeddedPostgres from "../../src/Storage/EmbeddedPostgres.js"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as TcpProxy from "../../scripts/support/TcpProxy.js"
import { freePort } from "../support/freePort.js"
import * as TestClient from "../support/TestClient.js"
import * as SseClient from "../support/SseClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

const status = (url: string, init?: RequestInit) => Effect.promise(() => fetch(url, init).then((response) => response.status))

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("a database recreated under a node", (it) => {
  it.scoped("gets its tables back and delivers again, live and to a client resuming", () =>
    Effect.gen(function*() {
      const database = yield* TestDatabase.TestDatabase
      const logs: Array<string> = []
      const node = yield* TestNode.start({}, { logs })
      const publish = (body: string) =>
        status(node.url("/messages"), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ channel: "again", body })
        })
      const client = yield* SseClient.connected(node.url("/events?channel=again"))
      expect(yield* publish("before")).toBe(201)
      yield* client.waitUntil(() => client.messages.length === 1)

      // Dropped with the node's connections, and created again, empty.
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`DROP DATABASE ${sql(database.name)} WITH (FORCE)`
        yield* sql`CREATE DATABASE ${sql(database.name)}`
      }).pipe(Effect.provide(Database.client(Redacted.make(inject("databaseUrl")), 1)), Effect.orDie)

      // The node comes back by itself: it takes messages, and delivers them to the client still
      // connected and to one that resumes from the last message it had.
      yield* SseClient.eventually(publish("after"), (code) => code === 201, "30 seconds", "a POST to succeed again")
      yield* client.waitUntil(() => client.messages.length === 2)
      expect(client.messages.map((message) => message.body)).toEqual(["before", "after"])
      const resumed = yield* SseClient.connected(node.url("/events?channel=again"), { lastEventId: client.messages[0]!.id })
      yield* resumed.waitUntil(() => resumed.messages.length === 1)
      expect(resumed.messages.map((message) => message.body)).toEqual(["after"])
      expect(resumed.resets).toEqual([])
      expect(yield* status(node.url("/healthz"))).toBe(200)
      yield* SseClient.eventually(status(node.url("/readyz")), (code) => code === 200, "15 seconds", "readyz to recover")
      expect(logs.filter((line) => line.includes("tables are gone from the database"))).toHaveLength(1)
    }))

  it.scoped("says so and fails /healthz when the database is replaced by one whose transaction counter is behind", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const database = yield* TestDatabase.TestDatabase
      const proxy = yield* TcpProxy.start(database.url)
      const logs: Array<string> = []
      const node = yield* TestNode.start({}, { databaseUrl: proxy.url, logs })
      // The test server has run well over a fresh one's first thousand transactions; make sure.
      yield* Effect.forEach(Array.from({ length: 1000 }), () => sql`SELECT pg_current_xact_id()`, { discard: true })
      const client = yield* SseClient.connected(node.url("/events?channel=replaced"))
      yield* TestClient.publish(node, { channel: "replaced", body: "on the first server" })
      yield* client.waitUntil(() => client.messages.length === 1)

      // Another server, freshly made, with the same database empty, behind the same address.
      const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pollcast-replaced-"))
      Fs.chmodSync(folder, 0o755)
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(folder, { recursive: true, force: true })))
      const fresh = yield* EmbeddedPostgres.start({ dataDir: Path.join(folder, "postgres"), port: yield* Effect.promise(freePort) })
      yield* Database.ensureDatabase(fresh.url("postgres"), database.name).pipe(Effect.orDie)
      yield* proxy.retarget(fresh.url(database.name))

      // Delivery cannot go on from the node's position there: only a restart helps, and it says so.
      const liveness = Effect.promise(() =>
        fetch(node.url("/healthz")).then(async (response) => ({ status: response.status, body: await response.json() }))
      )
      const answer = yield* SseClient.eventually(liveness, (answer) => answer.status === 503, "30 seconds", "healthz to fail")
      expect(answer.body).toMatchObject({ status: "restart needed", reason: expect.stringContaining("restart every pollcast node") })
      expect(yield* status(node.url("/readyz"))).toBe(503)
      expect(logs.filter((line) => line.startsWith("ERROR") && line.includes("transaction counter"))).toHaveLength(1)
    }), 90_000)
})
