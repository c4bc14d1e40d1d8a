import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect } from "effect"
import { Channel } from "../../src/Domain/Message.js"
import { MessageRepo } from "../../src/Storage/MessageRepo.js"
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
})
