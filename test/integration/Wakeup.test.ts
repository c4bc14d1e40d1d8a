/**
 * Wake-up against a real PostgreSQL, with POLL_INTERVAL at 10 seconds: a POST reaches subscribers at
 * once on every node (its node's own commit, announced after it to the others), a plain SQL INSERT
 * within a probe, and writers' transactions send no notification. The poll still decides what is
 * delivered; when the LISTEN connection is lost, announced writes wait for the interval (or a probe)
 * until it is back.
 *
 * "At once" is asserted as within 3 seconds: two messages in a row each within 3 seconds cannot be
 * delivered by ticks 10 seconds apart, and a loaded machine has room to spare.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Redacted } from "effect"
import pg from "pg"
import { inject } from "vitest"
import * as Database from "../../src/Storage/Database.js"
import type { WakeupStatus } from "../../src/Delivery/Wakeups.js"
import * as SseClient from "../support/SseClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestClient from "../support/TestClient.js"
import * as TestNode from "../support/TestNode.js"

const instant = "3 seconds"

const post = TestClient.publish

const getJson = <A>(node: TestNode.TestNode, path: string) =>
  Effect.promise(async () => (await (await fetch(node.url(path))).json()) as A)

const wakeupOf = (node: TestNode.TestNode) =>
  Effect.map(getJson<{ wakeup: WakeupStatus }>(node, "/stats"), (stats) => stats.wakeup)

const listening = (node: TestNode.TestNode) =>
  SseClient.eventually(wakeupOf(node), (wakeup) => wakeup.state === "listening", "10 seconds", "wake-up to listen")

/** A node with POLL_INTERVAL 10 seconds, listening for wake-ups. */
const startNode = (settings: Record<string, string> = {}, options: TestNode.StartOptions = {}) =>
  Effect.tap(TestNode.start({ POLL_INTERVAL: "10 seconds", ...settings }, options), listening)

const insert = (channel: string, body: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`INSERT INTO messages (channel, author, body) VALUES (${channel}, 'other system', ${body})`)

/** A writer who chose to wake nodes from its own transaction (and pays for it, see the README). */
const insertAnnounced = (channel: string, body: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(Effect.zipRight(
      sql`INSERT INTO messages (channel, author, body) VALUES (${channel}, 'other system', ${body})`,
      sql`SELECT pg_notify('pollcast_messages_inserted', '')`
    )))

/** The notifications a LISTEN of our own receives on the wake-up channel, for as long as the scope lasts. */
const overheard = Effect.gen(function*() {
  const database = yield* TestDatabase.TestDatabase
  const heard: Array<string> = []
  const client = new pg.Client({ connectionString: Redacted.value(database.url) })
  yield* Effect.acquireRelease(
    Effect.promise(async () => {
      await client.connect()
      client.on("notification", (notification) => heard.push(notification.channel))
      await client.query("LISTEN pollcast_messages_inserted")
    }),
    () => Effect.promise(() => client.end())
  )
  return heard
})

/** The backends of nodes listening for wake-ups on this file's database. */
const listeners = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<{ pid: number }>`
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'pollcast wakeups'`
})

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("wake-up", (it) => {
  it.scoped("delivers a POST and a plain SQL INSERT at once, though POLL_INTERVAL is 10 seconds", () =>
    Effect.gen(function*() {
      const node = yield* startNode()
      const client = yield* SseClient.connected(node.url("/events?channel=instant"))
      yield* post(node, { channel: "instant", body: "posted" })
      yield* client.waitUntil(() => client.messages.length === 1, instant)
      yield* insert("instant", "inserted")
      yield* client.waitUntil(() => client.messages.length === 2, instant)
      expect(client.bodies()).toEqual(["posted", "inserted"])
      const ready = yield* getJson<{ wakeup: string }>(node, "/readyz")
      expect(ready.wakeup).toBe("listening")
    }))

  it.scoped("keeps the gap-free order: a row committed after later ones is delivered first, once, on its commit", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const node = yield* startNode()
      const clients = yield* Effect.all([1, 2].map(() => SseClient.connected(node.url("/events?channel=held"))))

      const written = yield* Deferred.make<void>()
      const commit = yield* Deferred.make<void>()
      const slowWriter = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO messages (channel, author, body) VALUES ('held', 'slow system', 'A')`
        yield* Deferred.succeed(written, undefined)
        yield* Deferred.await(commit)
      })))
      yield* Deferred.await(written)
      yield* post(node, { channel: "held", body: "B" })
      yield* insert("held", "C")
      yield* post(node, { channel: "held", body: "D" })

      // Each commit woke the node, but A's open transaction holds B, C and D back.
      yield* Effect.sleep("500 millis")
      for (const client of clients) expect(client.bodies()).toEqual([])

      // A's commit wakes it again, and everything is final.
      yield* Deferred.succeed(commit, undefined)
      yield* Fiber.join(slowWriter)
      for (const client of clients) yield* client.waitUntil(() => client.messages.length >= 4, instant)
      yield* Effect.sleep("250 millis")
      for (const client of clients) expect(client.bodies()).toEqual(["A", "B", "C", "D"])
      expect(clients[1]!.messages.map((m) => m.id)).toEqual(clients[0]!.messages.map((m) => m.id))
    }))

  it.scoped("wakes every node on the database", () =>
    Effect.gen(function*() {
      const nodes = yield* Effect.all([startNode(), startNode()])
      const clients = yield* Effect.all(nodes.map((node) => SseClient.connected(node.url("/events?channel=nodes"))))
      yield* post(nodes[0]!, { channel: "nodes", body: "via the first node" })
      for (const client of clients) yield* client.waitUntil(() => client.messages.length === 1, instant)
      // The second node was woken by the first's announcement; the first, by its own commit.
      yield* SseClient.eventually(wakeupOf(nodes[1]!), (wakeup) => wakeup.notifications >= 1, "5 seconds", "the announcement")
      expect((yield* wakeupOf(nodes[0]!)).notifications).toBe(0)
      yield* insert("nodes", "via SQL")
      for (const client of clients) yield* client.waitUntil(() => client.messages.length === 2, instant)
      for (const client of clients) expect(client.bodies()).toEqual(["via the first node", "via SQL"])
    }))

  it.scoped("sends no notification from writers' transactions, and one after each of its own commits", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const node = yield* startNode()
      const heard = yield* overheard
      const client = yield* SseClient.connected(node.url("/events?channel=quiet"))
      // No trigger is left on the table, for databases made before too (a migration drops it).
      const triggers = yield* sql`SELECT tgname FROM pg_trigger WHERE tgrelid = 'messages'::regclass AND NOT tgisinternal`
      expect(triggers).toEqual([])

      yield* insert("quiet", "plain")
      yield* client.waitUntil(() => client.messages.length === 1, instant)
      expect(heard).toEqual([])
      yield* post(node, { channel: "quiet", body: "posted" })
      yield* client.waitUntil(() => client.messages.length === 2, instant)
      yield* SseClient.waitUntil(() => heard.length === 1, "5 seconds", "the announcement")
      expect(client.bodies()).toEqual(["plain", "posted"])
    }))

  it.scoped("falls back to the interval while the LISTEN connection is down, and is instant again once it is back", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const database = yield* TestDatabase.TestDatabase
      const logs: Array<string> = []
      // No probe: announced writes then wait for the LISTEN connection or the interval.
      const node = yield* startNode({ WAKEUP_PROBE_INTERVAL: "0 millis" }, { logs })
      // What start-up says (access control off, say) is not the outage's to count.
      const startUp = logs.length
      const client = yield* SseClient.connected(node.url("/events?channel=outage"))
      yield* insertAnnounced("outage", "before")
      yield* client.waitUntil(() => client.messages.length === 1, instant)

      // The LISTEN connection is killed, and the database refuses new connections for a while
      // (the node's pool keeps the ones it has). Only from another database can it be told so.
      const allowConnections = (allow: boolean) =>
        Effect.flatMap(SqlClient.SqlClient, (admin) =>
          admin`ALTER DATABASE ${admin(database.name)} WITH ALLOW_CONNECTIONS ${admin.literal(String(allow))}`).pipe(
            Effect.provide(Database.client(Redacted.make(inject("databaseUrl")), 1)),
            Effect.orDie
          )
      yield* Effect.acquireRelease(allowConnections(false), () => allowConnections(true))
      const killed = yield* sql`
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'pollcast wakeups'`
      expect(killed).toHaveLength(1)
      yield* SseClient.eventually(wakeupOf(node), (wakeup) => wakeup.state === "reconnecting", "5 seconds", "the loss to show")
      const readyz = yield* getJson<{ status: string; wakeup: string }>(node, "/readyz")
      expect(readyz).toMatchObject({ status: "ready", wakeup: "reconnecting" })

      // Unannounced, it still arrives, at the next tick of the interval.
      yield* insertAnnounced("outage", "while down")
      yield* client.waitUntil(() => client.messages.length === 2, "12 seconds")
      expect((yield* wakeupOf(node)).state).toBe("reconnecting")

      yield* allowConnections(true)
      yield* listening(node)
      for (const body of ["after 1", "after 2"]) {
        yield* insertAnnounced("outage", body)
        yield* client.waitUntil(() => client.bodies().includes(body), instant)
      }
      expect(client.bodies()).toEqual(["before", "while down", "after 1", "after 2"])
      expect(client.opens()).toBe(1)
      // One line for the outage, however many attempts it took, and one for the recovery.
      expect(logs.filter((line) => line.includes("Lost the LISTEN connection"))).toHaveLength(1)
      expect(logs.filter((line) => line.includes("Listening for wake-ups again"))).toHaveLength(1)
      expect(logs.slice(startUp).filter((line) => line.startsWith("WARN") || line.startsWith("ERROR"))).toHaveLength(1)
      expect(yield* wakeupOf(node)).toMatchObject({ state: "listening", outages: 1 })
    }))

  it.scoped("holds no LISTEN connection with NOTIFY_WAKEUP=false, and delivers at the interval", () =>
    Effect.gen(function*() {
      const before = (yield* listeners).length
      const node = yield* TestNode.start({ POLL_INTERVAL: "500 millis", NOTIFY_WAKEUP: "false", WAKEUP_PROBE_INTERVAL: "0 millis" })
      expect(yield* wakeupOf(node)).toMatchObject({ state: "disabled" })
      expect((yield* listeners).length).toBeLessThanOrEqual(before)
      const client = yield* SseClient.connected(node.url("/events?channel=interval-only"))
      yield* insert("interval-only", "polled")
      yield* client.waitUntil(() => client.messages.length === 1, "5 seconds")
      expect((yield* wakeupOf(node)).notifications).toBe(0)
    }))
})
