/**
 * MESSAGE_RETENTION: old messages are deleted in small batches, the newest is always kept, and a
 * client resuming from before what is kept is told so and continues from the oldest kept message.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Http from "node:http"
import { beginning, messageId } from "../../src/Domain/Message.js"
import * as SseClient from "../support/SseClient.js"
import * as SseFrames from "../support/SseFrames.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestClient from "../support/TestClient.js"
import * as TestNode from "../support/TestNode.js"

interface Page {
  readonly messages: Array<{ readonly id: string; readonly body: string }>
  readonly previous: string | null
}

const history = (node: TestNode.TestNode, query: string) =>
  Effect.promise(() => fetch(node.url(`/messages?${query}`)).then((response) => response.json() as Promise<Page>))

const post = (node: TestNode.TestNode, body: string) => TestClient.publish(node, { channel: "retention", body })

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("retention", (it) => {
  it.scoped("deletes expired messages in batches, always keeps the newest, and tells a resuming client what is gone", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const count = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM messages`.pipe(
        Effect.map((rows) => rows[0]!.n)
      )
      // 2,500 messages written an hour ago: more than two batches.
      const old = yield* sql<{ readonly txid: string; readonly id: string }>`
        INSERT INTO messages (channel, author, body, created_at)
        SELECT 'retention', 'archive', 'old ' || n, now() - interval '1 hour' FROM generate_series(1, 2500) AS n
        RETURNING txid::text AS txid, id::text AS id`
      const oldIds = old.map((row) => messageId(row.txid, row.id)).sort()
      const node = yield* TestNode.start({ MESSAGE_RETENTION: "10 minutes", RETENTION_INTERVAL: "100 millis" })

      // Every one expired, but the newest stays: it says where the log has reached.
      yield* SseClient.eventually(count, (n) => n === 1, "30 seconds", "expired messages to be deleted")
      expect((yield* history(node, "channel=retention")).messages.map((message) => message.id)).toEqual([oldIds[2499]])

      const fresh = [yield* post(node, "new 1"), yield* post(node, "new 2"), yield* post(node, "new 3")]
      // Now the last old one is no longer the newest, and goes too.
      yield* SseClient.eventually(count, (n) => n === 3, "30 seconds", "the last expired message to be deleted")

      // History stops cleanly at the oldest kept message.
      const newest = yield* history(node, "channel=retention&limit=2")
      expect(newest.messages.map((message) => message.body)).toEqual(["new 2", "new 3"])
      const before = yield* history(node, `channel=retention&limit=2&before=${newest.previous}`)
      expect(before).toMatchObject({ messages: [{ body: "new 1" }], previous: null })

      // A client that had only the first old message is told where what is kept begins.
      const client = yield* SseClient.connected(node.url("/events?channel=retention"), { lastEventId: oldIds[0]! })
      yield* client.waitUntil(() => client.messages.length === 3)
      expect(client.resets).toEqual([{ id: oldIds[2499], reason: "expired", lastEventId: oldIds[2499] }])
      expect(client.messages.map((message) => message.id)).toEqual(fresh.map((message) => message.id))
      expect(client.opens()).toBe(1)
    }))
  it.scoped("gives an empty channel a position that /events goes on from without a reset, once retention has deleted messages", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // Messages the file's other tests wrote would be young and sort first: none here.
      yield* sql`DELETE FROM messages`
      yield* sql`
        INSERT INTO messages (channel, author, body, created_at)
        SELECT 'elsewhere', 'archive', 'old ' || n, now() - interval '1 hour' FROM generate_series(1, 20) AS n`
      const node = yield* TestNode.start({ MESSAGE_RETENTION: "10 minutes", RETENTION_INTERVAL: "100 millis" })
      const count = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM messages`.pipe(Effect.map((rows) => rows[0]!.n))
      yield* SseClient.eventually(count, (n) => n === 1, "30 seconds", "expired messages to be deleted")

      const empty = yield* Effect.promise(() =>
        fetch(node.url("/messages?channel=nothing-yet")).then((response) => response.json() as Promise<{ messages: Array<unknown>; lastEventId: string }>)
      )
      expect(empty.messages).toEqual([])
      const client = yield* SseClient.connected(node.url("/events?channel=nothing-yet"), { lastEventId: empty.lastEventId })
      const posted = yield* TestClient.publish(node, { channel: "nothing-yet", body: "first" })
      yield* client.waitUntil(() => client.messages.length === 1)
      expect(client.resets).toEqual([])
      expect(client.messages.map((message) => message.id)).toEqual([posted.id])
    }))
  it.scoped("gives a client replaying while retention deletes ahead of it every message or a reset, never a silent gap", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM messages`
      // 20,000 expired messages of 1 KB, then one fresh: the replay pauses on a client that reads slowly.
      const stored = (yield* sql<{ readonly txid: string; readonly id: string }>`
        INSERT INTO messages (channel, author, body, created_at)
        SELECT 'replayed', 'archive', repeat('x', 1000) || n, now() - interval '1 hour' FROM generate_series(1, 20000) AS n
        RETURNING txid::text AS txid, id::text AS id`).map((row) => messageId(row.txid, row.id)).sort()
      const fresh = yield* sql<{ readonly txid: string; readonly id: string }>`
        INSERT INTO messages (channel, author, body) VALUES ('replayed', 'live', 'fresh') RETURNING txid::text AS txid, id::text AS id`
      const all: Array<string> = [...stored, messageId(fresh[0]!.txid, fresh[0]!.id)]
      const node = yield* TestNode.start({ CLIENT_STALL_TIMEOUT: "30 seconds" })

      // The client takes the first bytes, then stops reading while retention runs on another node.
      const frames = SseFrames.parser()
      const response = yield* Effect.async<Http.IncomingMessage>((resume) => {
        const request = Http.get(node.url("/events?channel=replayed"), { headers: { "last-event-id": beginning }, agent: false }, (response) =>
          resume(Effect.succeed(response)))
        request.on("error", () => {})
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => response.destroy()))
      response.on("data", (chunk: Buffer) => frames.feed(chunk))
      yield* SseClient.eventually(Effect.sync(() => frames.events.length), (n) => n > 0, "10 seconds", "the replay to start")
      response.pause()
      const count = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM messages`.pipe(Effect.map((rows) => rows[0]!.n))
      yield* TestNode.start({ MESSAGE_RETENTION: "10 minutes", RETENTION_INTERVAL: "100 millis" })
      yield* SseClient.eventually(count, (n) => n === 1, "30 seconds", "the expired messages to be deleted")
      response.resume()
      yield* SseClient.eventually(Effect.sync(() => frames.ids()), (ids) => ids.includes(all[all.length - 1]!), "30 seconds", "the fresh message")

      // Between two messages with no reset between them, nothing stored was skipped.
      let previous: string | undefined = undefined
      for (const event of frames.events) {
        if (event.event === "reset") {
          previous = undefined
          continue
        }
        if (event.event !== "message") continue
        if (previous !== undefined) expect(all.indexOf(event.id!), `the message after ${previous}`).toBe(all.indexOf(previous) + 1)
        previous = event.id
      }
      expect(frames.events.filter((event) => event.event === "reset").length).toBeGreaterThan(0)
    }), 90_000)

  it.scoped("goes past a young message that sorts before expired ones, and says so", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const count = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM messages WHERE channel = 'dated'`.pipe(
        Effect.map((rows) => rows[0]!.n)
      )
      // First in delivery order, one message dated now (a writer's own created_at, or a clock set
      // ahead and then corrected); after it, 1,500 written an hour ago.
      yield* sql`INSERT INTO messages (channel, author, body) VALUES ('dated', 'writer', 'young')`
      yield* sql`
        INSERT INTO messages (channel, author, body, created_at)
        SELECT 'dated', 'archive', 'old ' || n, now() - interval '1 hour' FROM generate_series(1, 1500) AS n`
      const logs: Array<string> = []
      yield* TestNode.start({ MESSAGE_RETENTION: "10 minutes", RETENTION_INTERVAL: "100 millis" }, { logs })

      // Everything but the newest goes: the young one with the expired ones behind it.
      yield* SseClient.eventually(count, (n) => n === 1, "30 seconds", "the expired messages to be deleted")
      const [kept] = yield* sql<{ readonly body: string }>`SELECT body FROM messages WHERE channel = 'dated'`
      expect(kept?.body).toBe("old 1500")
      expect(logs.filter((line) => line.includes("were created less than 10m ago, yet sorted before expired ones"))).toHaveLength(1)
    }))
})
