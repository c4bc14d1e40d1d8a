/**
 * A database dropped and created again empty under a running node: the node creates its tables
 * again, as a start would, and goes on delivering, instead of answering 503 for good.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { inject } from "vitest"
import * as Database from "../../src/Database.js"
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
})
