import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect } from "effect"
import { Channel } from "../../src/Domain/Message.js"
import { connectedNodes, MessageRepo, renumberRestored } from "../../src/Storage/MessageRepo.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

const newMessage = (channel: string, i: number) => ({ channel: Channel.make(channel), author: `author ${i}`, body: `body ${i}` })

layer(TestDatabase.layer, { timeout: 60_000, excludeTestServices: true })("MessageRepo", (it) => {
  describe("insert", () => {
    it.scoped("stores inserts that wait together with one commit, each answered with its own row", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const repo = Context.get(node.context, MessageRepo)
        const sent = Array.from({ length: 300 }, (_, i) => newMessage("together", i))
        const stored = yield* Effect.forEach(sent, (message) => repo.insert(message), { concurrency: "unbounded" })
        expect(stored.map(({ author, body, channel }) => ({ channel, author, body }))).toEqual(sent)
        expect(new Set(stored.map((message) => message.id)).size).toBe(sent.length)

        const sql = yield* SqlClient.SqlClient
        const counted = yield* sql<{ transactions: string }>`
          SELECT count(DISTINCT txid) AS transactions FROM messages WHERE channel = 'together'`
        // The first inserts go at once, one each; all the rest wait for them and go together.
        expect(Number(counted[0]?.transactions)).toBeLessThanOrEqual(4)
      }))
  })

  describe("the repair's queries", () => {
    it.scoped("fail with a DatabaseError carrying PostgreSQL's SQLSTATE, not a raw SqlError", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`CREATE SCHEMA IF NOT EXISTS without_tables`
        // On a connection that cannot see the messages table, as on a database never migrated.
        const error = yield* sql.withTransaction(
          sql`SET LOCAL search_path TO without_tables`.pipe(Effect.zipRight(renumberRestored))
        ).pipe(Effect.flip)
        expect(error._tag).toBe("DatabaseError")
        expect(error._tag === "DatabaseError" && error.code).toBe("42P01")
        expect(error._tag === "DatabaseError" && error.tableMissing).toBe(true)
      }))

    it.scoped("count the connections of a named node by address", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`SELECT 1`
        expect(yield* connectedNodes("pollcast-no-such-node")).toEqual([])
        const nodes = yield* connectedNodes("pollcast")
        expect(nodes).toEqual([{ address: "127.0.0.1", connections: expect.any(Number) }])
        expect(nodes.map((node) => node.connections > 0)).toEqual([true])
      }))
  })
})
