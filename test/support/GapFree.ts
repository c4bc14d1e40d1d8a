/**
 * The gap-free scenarios, for a node started however a test file needs (directly, or through a
 * pooler): a row committed after later ones is delivered first, once, in one order; and every
 * client of a node gets the same messages in the same order under concurrent writers.
 */
import { SqlClient } from "@effect/sql"
import { expect } from "@effect/vitest"
import { Deferred, Effect, Fiber, Random, type Scope } from "effect"
import { messageIdParts } from "../../src/Domain/Message.js"
import * as SseClient from "./SseClient.js"
import * as TestClient from "./TestClient.js"
import type * as TestDatabase from "./TestDatabase.js"
import type * as TestNode from "./TestNode.js"

const post = TestClient.publish

/** Waits a little longer once a condition holds, so that a duplicate arriving late is seen too. */
const settle = Effect.sleep("250 millis")

type Start = Effect.Effect<TestNode.TestNode, unknown, Scope.Scope | TestDatabase.TestDatabase | SqlClient.SqlClient>

export const heldBack = (start: Start) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const node = yield* start
    const clients = yield* Effect.all(
      [1, 2, 3].map(() => SseClient.connected(node.url("/events?channel=gap-free")))
    )

    // Another system holds a transaction open after writing a row.
    const written = yield* Deferred.make<string>()
    const commit = yield* Deferred.make<void>()
    const slowWriter = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
      const rows = yield* sql<{ id: string }>`
        INSERT INTO messages (channel, author, body) VALUES ('gap-free', 'slow system', 'A') RETURNING id::text AS id`
      yield* Deferred.succeed(written, rows[0]!.id)
      yield* Deferred.await(commit)
    })))
    const slowSequence = yield* Deferred.await(written)

    // Later rows commit first: through the API, and with plain SQL.
    const b = yield* post(node, { channel: "gap-free", body: "B" })
    yield* sql`INSERT INTO messages (channel, author, body) VALUES ('gap-free', 'other system', 'C')`
    yield* post(node, { channel: "gap-free", body: "D" })
    // The trap: A's sequence number is below B's, so a poller reading "id > last seen" after B
    // would never see A.
    expect(BigInt(slowSequence)).toBeLessThan(BigInt(messageIdParts(b.id).seq))

    // While A's transaction is open, B, C and D are held back, not sent ahead of it.
    yield* Effect.sleep("300 millis")
    for (const client of clients) expect(client.bodies()).toEqual([])

    yield* Deferred.succeed(commit, undefined)
    yield* Fiber.join(slowWriter)
    for (const client of clients) yield* client.waitUntil(() => client.messages.length >= 4)
    yield* settle
    const order = clients[0]!.messages.map((message) => message.id)
    for (const client of clients) {
      expect(client.bodies()).toEqual(["A", "B", "C", "D"])
      expect(client.messages.map((message) => message.id)).toEqual(order)
    }
  })

export const concurrentWriters = (start: Start) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const node = yield* start
    const channels = ["cw-1", "cw-2", "cw-3"]
    const everything = yield* Effect.all([1, 2].map(() =>
      SseClient.connected(node.url(`/events?${channels.map((c) => `channel=${c}`).join("&")}`))
    ))
    const first = yield* SseClient.connected(node.url("/events?channel=cw-1"))
    const others = yield* SseClient.connected(node.url("/events?channel=cw-2&channel=cw-3"))

    const perWriter = 40
    const apiWriters = channels.map((channel) =>
      Effect.forEach(Array.from({ length: perWriter }, (_, i) => i), (i) =>
        post(node, { channel, body: `${channel} #${i}` }))
    )
    // Plain SQL, two rows a transaction, each held open for a random moment.
    const sqlWriter = Effect.forEach(Array.from({ length: perWriter / 2 }, (_, i) => i), (i) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO messages (channel, author, body) VALUES ('cw-2', 'sql', ${`sql #${i}a`})`
        yield* Effect.sleep(`${yield* Random.nextIntBetween(0, 30)} millis`)
        yield* sql`INSERT INTO messages (channel, author, body) VALUES ('cw-3', 'sql', ${`sql #${i}b`})`
      })))
    yield* Effect.all([...apiWriters, sqlWriter], { concurrency: "unbounded", discard: true })

    const total = channels.length * perWriter + perWriter
    for (const client of everything) yield* client.waitUntil(() => client.messages.length >= total)
    yield* settle
    const order = everything[0]!.messages.map((message) => message.id)
    expect(new Set(order).size).toBe(total)
    expect([...order].sort()).toEqual(order)
    expect(everything[1]!.messages.map((message) => message.id)).toEqual(order)
    const sent = everything[0]!.messages
    expect(first.messages.map((m) => m.id)).toEqual(sent.filter((m) => m.channel === "cw-1").map((m) => m.id))
    expect(others.messages.map((m) => m.id)).toEqual(sent.filter((m) => m.channel !== "cw-1").map((m) => m.id))
  })
