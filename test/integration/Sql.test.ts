/**
 * pollcast from other systems' own transactions: pollcast_publish() with the rules of POST
 * /messages, and snapshot-then-follow: an application reads its state in a REPEATABLE READ
 * transaction, takes pollcast_position() there, and /events from it delivers exactly what that
 * read did not see, while every kind of writer goes on (plain INSERTs, the SQL function, POSTs,
 * transactions held open across polls).
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Either, Fiber, Random } from "effect"
import * as SseClient from "../support/SseClient.js"
import * as TestClient from "../support/TestClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

/** What PostgreSQL answered a statement it refused, or "accepted". */
const refusal = <A, R>(effect: Effect.Effect<A, SqlError.SqlError, R>) =>
  Effect.map(Effect.either(effect), (result) =>
    Either.isLeft(result)
      ? result.left.cause instanceof Error ? result.left.cause.message : String(result.left.cause)
      : "accepted")

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("from SQL", (it) => {
  it.scoped("pollcast_publish stores a message with POST's rules and returns the id it is delivered with", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const node = yield* TestNode.start({ MAX_BODY_BYTES: "100" })
      const client = yield* SseClient.connected(node.url("/events?channel=fn"))
      const id = yield* sql.withTransaction(Effect.gen(function*() {
        const [row] = yield* sql<{ readonly id: string }>`SELECT pollcast_publish('fn', 'from SQL', '  billing  ') AS id`
        yield* sql`SELECT pollcast_publish(channel => 'fn', body => 'named')`
        return row!.id
      }))
      yield* client.waitUntil(() => client.messages.length === 2)
      expect(client.messages[0]).toMatchObject({ id, body: "from SQL", author: "billing" })
      expect(client.messages[1]).toMatchObject({ body: "named", author: "anonymous" })

      const publish = (channel: string | null, body: string | null, author: string | null = "writer") =>
        refusal(sql`SELECT pollcast_publish(${channel}, ${body}, ${author})`)
      expect(yield* publish("no spaces allowed", "x")).toMatch(/channel must be 1 to 64 characters/)
      expect(yield* publish(null, "x")).toMatch(/channel must be/)
      expect(yield* publish("fn", "")).toMatch(/body must not be empty/)
      expect(yield* publish("fn", "é".repeat(51))).toMatch(/body must be at most 100 bytes of UTF-8 \(MAX_BODY_BYTES\); it has 102/)
      expect(yield* publish("fn", "x", " \t ")).toMatch(/author must not be blank/)
      expect(yield* publish("fn", "x", "a".repeat(65))).toMatch(/author must be at most 64 characters/)
      expect(yield* publish("fn", "é".repeat(50), "a".repeat(64))).toBe("accepted")
    }))

  it.scoped("snapshot then follow: /events from pollcast_position() delivers exactly what the snapshot did not see, once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const node = yield* TestNode.start({ POLL_INTERVAL: "200 millis" })
      const channel = "state"
      let writing = true
      let counter = 0
      const next = () => `m${++counter}`
      const pause = (max: number) => Effect.flatMap(Random.nextIntBetween(0, max), (millis) => Effect.sleep(millis))
      // Each round builds its statements afresh, each body new.
      const loop = (write: () => Effect.Effect<unknown, unknown>) =>
        Effect.whileLoop({ while: () => writing, body: () => Effect.orDie(Effect.suspend(write)), step: () => undefined })
      const writers = [
        // Plain INSERTs, each its own transaction.
        ...[1, 2].map(() => loop(() => Effect.zipRight(sql`INSERT INTO messages (channel, author, body) VALUES (${channel}, 'plain', ${next()})`, pause(15)))),
        // The SQL function, two messages per transaction.
        loop(() =>
          Effect.zipRight(
          sql.withTransaction(Effect.zipRight(
            sql`SELECT pollcast_publish(${channel}, ${next()}, 'function')`,
            sql`SELECT pollcast_publish(${channel}, ${next()}, 'function')`
          )),
          pause(20)
        )),
        // POSTs.
        ...[1, 2].map(() => loop(() => Effect.zipRight(TestClient.publish(node, { channel, body: next() }), pause(15)))),
        // Transactions held open across several polls, so that snapshots catch them running.
        ...[1, 2].map(() =>
          loop(() => sql.withTransaction(Effect.gen(function*() {
            yield* sql`INSERT INTO messages (channel, author, body) VALUES (${channel}, 'held', ${next()})`
            yield* pause(600)
            yield* sql`INSERT INTO messages (channel, author, body) VALUES (${channel}, 'held', ${next()})`
          })))
        )
      ]
      const fibers = yield* Effect.forEach(writers, (writer) => Effect.fork(writer))

      // Three applications render their state and follow from it, at different moments.
      const followers = yield* Effect.forEach([700, 1400, 2100], (at) =>
        Effect.gen(function*() {
          yield* Effect.sleep(at)
          const { position, seen } = yield* sql.withTransaction(Effect.gen(function*() {
            yield* sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`
            const rows = yield* sql<{ readonly body: string }>`SELECT body FROM messages WHERE channel = ${channel}`
            const [found] = yield* sql<{ readonly position: string }>`SELECT pollcast_position() AS position`
            return { position: found!.position, seen: rows.map((row) => row.body) }
          }))
          const client = yield* SseClient.connected(node.url(`/events?channel=${channel}`), { lastEventId: position })
          return { position, seen, client }
        }), { concurrency: "unbounded" })

      yield* Effect.sleep("1500 millis")
      writing = false
      yield* Effect.forEach(fibers, Fiber.join, { discard: true })
      const all = (yield* sql<{ readonly body: string }>`SELECT body FROM messages WHERE channel = ${channel}`).map((row) => row.body)
      expect(all.length).toBeGreaterThan(100)
      // At least one snapshot caught a transaction running, or the test proves little.
      expect(followers.some((follower) => follower.position.includes("@"))).toBe(true)

      for (const { client, seen } of followers) {
        const missing = all.filter((body) => !seen.includes(body))
        yield* client.waitUntil(() => client.messages.length >= missing.length, "15 seconds")
        yield* Effect.sleep("300 millis")
        const received = client.bodies()
        expect(new Set(received).size, "no message twice").toBe(received.length)
        expect(received.filter((body) => seen.includes(body)), "nothing the snapshot saw").toEqual([])
        expect([...received].sort(), "everything it did not see").toEqual([...missing].sort())
        expect(client.resets, JSON.stringify(client.resets)).toEqual([])
      }

      // A follower that reconnects from any event it had goes on exactly as it would have.
      const first = followers[0]!
      const at = Math.floor(first.client.messages.length / 3)
      const resumed = yield* SseClient.connected(node.url(`/events?channel=${channel}`), { lastEventId: first.client.eventIds[at]! })
      const rest = first.client.bodies().slice(at + 1)
      yield* resumed.waitUntil(() => resumed.messages.length >= rest.length, "15 seconds")
      yield* Effect.sleep("300 millis")
      expect(resumed.bodies()).toEqual(rest)
    }), 60_000)
})
