/**
 * The web page at `/`, in a real Chromium, against a real service and PostgreSQL.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import type { Page } from "playwright-core"
import { messageIdParts, type MessageId } from "../../src/Domain/Message.js"
import * as Browser from "../support/Browser.js"
import { eventually } from "../support/SseClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestClient from "../support/TestClient.js"
import * as TestNode from "../support/TestNode.js"

const post = TestClient.publish

const live = (page: Page) => Effect.promise(() => page.waitForSelector("#status[data-state=\"live\"]"))

const messageCount = (page: Page, count: number) =>
  Effect.promise(() =>
    page.locator("#messages .message").nth(count - 1).waitFor({ timeout: 20_000 })
  )

const shown = (page: Page) =>
  Effect.promise(() =>
    page.$$eval("#messages .message", (items) =>
      items.map((item) => ({
        id: item.getAttribute("data-id") ?? "",
        author: item.querySelector(".author")?.textContent ?? "",
        time: item.querySelector("time")?.textContent ?? "",
        body: item.querySelector(".body")?.textContent ?? ""
      })))
  )

/** Lets anything that would arrive late (a duplicate, say) arrive before asserting. */
const settle = Effect.sleep("300 millis")

layer(Layer.merge(TestDatabase.layer, Browser.Browser.layer), { timeout: 120_000, excludeTestServices: true })(
  "web page",
  (it) => {
    it.scoped("shows a message posted through the API on an open page, with author and time", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const { errors, page } = yield* Browser.open(node.url("/#e2e-api"))
        yield* live(page)
        yield* post(node, { channel: "e2e-api", author: "api client", body: "hello from the API" })
        yield* messageCount(page, 1)
        const [message] = yield* shown(page)
        expect(message).toMatchObject({ author: "api client", body: "hello from the API" })
        expect(message!.time).toMatch(/\d/)
        expect(errors).toEqual([])
      }))

    it.scoped("loads history first and continues live with no duplicate at the join", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        for (const body of ["one", "two", "three"]) yield* post(node, { channel: "e2e-join", body })
        const { page } = yield* Browser.open(node.url("/#e2e-join"))
        yield* live(page)
        yield* messageCount(page, 3)
        yield* post(node, { channel: "e2e-join", body: "four" })
        yield* messageCount(page, 4)
        yield* settle
        const messages = yield* shown(page)
        expect(messages.map((message) => message.body)).toEqual(["one", "two", "three", "four"])
        expect(new Set(messages.map((message) => message.id)).size).toBe(4)
      }))

    it.scoped("loads older messages on request, in order", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        yield* Effect.forEach(Array.from({ length: 105 }, (_, i) => i + 1), (i) =>
          post(node, { channel: "e2e-older", body: `m${i}` }), { concurrency: 1 })
        const { page } = yield* Browser.open(node.url("/#e2e-older"))
        yield* live(page)
        yield* messageCount(page, 100)
        expect((yield* shown(page))[0]!.body).toBe("m6")
        yield* Effect.promise(() => page.click("#older"))
        yield* messageCount(page, 105)
        expect((yield* shown(page)).map((message) => message.body)).toEqual(
          Array.from({ length: 105 }, (_, i) => `m${i + 1}`)
        )
        expect(yield* Effect.promise(() => page.isHidden("#older"))).toBe(true)
      }))

    it.scoped("sends a message typed on one page to another page", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const sender = yield* Browser.open(node.url("/#e2e-chat"))
        const reader = yield* Browser.open(node.url("/#e2e-chat"), { width: 390, height: 760 })
        yield* Effect.all([live(sender.page), live(reader.page)])
        yield* Effect.promise(async () => {
          await sender.page.fill("#author", "ada")
          await sender.page.fill("#body", "typed in the browser")
          await sender.page.press("#body", "Enter")
        })
        yield* messageCount(reader.page, 1)
        yield* messageCount(sender.page, 1)
        expect((yield* shown(reader.page))[0]).toMatchObject({ author: "ada", body: "typed in the browser" })
        expect(yield* Effect.promise(() => sender.page.inputValue("#body"))).toBe("")
      }))

    it.scoped("shows the server's validation error when a message is refused", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ MAX_BODY_BYTES: "10" })
        const { page } = yield* Browser.open(node.url("/#e2e-errors"))
        yield* live(page)
        yield* Effect.promise(async () => {
          await page.fill("#body", "far too long for ten bytes")
          await page.click("#send")
          await page.waitForSelector("#error:not([hidden])")
        })
        expect(yield* Effect.promise(() => page.textContent("#error"))).toBe("body: must be at most 10 bytes of UTF-8")
        // What was typed is kept, to be shortened rather than retyped.
        expect(yield* Effect.promise(() => page.inputValue("#body"))).toBe("far too long for ten bytes")
      }))

    it.scoped("renders message text as text, never as HTML", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const { dialogs, page } = yield* Browser.open(node.url("/#e2e-xss"))
        yield* live(page)
        const attack = "<img src=x onerror=alert(1)>"
        yield* post(node, { channel: "e2e-xss", author: "<b>mallory</b>", body: attack })
        yield* messageCount(page, 1)
        yield* settle
        expect((yield* shown(page))[0]).toMatchObject({ author: "<b>mallory</b>", body: attack })
        expect(yield* Effect.promise(() => page.locator("#messages img, #messages b").count())).toBe(0)
        expect(dialogs).toEqual([])
      }))

    it.scoped("recovers when the service restarts and shows what was posted while it was down", () =>
      Effect.gen(function*() {
        const firstRun = yield* Scope.make()
        const node = yield* TestNode.start({ SSE_RETRY: "300 millis" }).pipe(Scope.extend(firstRun))
        const port = new URL(node.url("/")).port
        // Another node on the same database takes posts while this one is down.
        const other = yield* TestNode.start()
        const { page } = yield* Browser.open(node.url("/#e2e-restart"))
        const lastEventIds: Array<string | undefined> = []
        page.on("request", (request) => {
          if (new URL(request.url()).pathname === "/events") {
            void request.allHeaders().then((headers) => lastEventIds.push(headers["last-event-id"]))
          }
        })
        yield* live(page)
        const before = yield* post(node, { channel: "e2e-restart", body: "before the restart" })
        yield* messageCount(page, 1)

        yield* Scope.close(firstRun, Exit.void)
        // The browser's EventSource notices, and keeps trying by itself.
        yield* Effect.promise(() => page.waitForSelector("#status[data-state=\"reconnecting\"]"))
        yield* post(other, { channel: "e2e-restart", body: "posted while down 1" })
        yield* post(other, { channel: "e2e-restart", body: "posted while down 2" })

        const restarted = yield* TestNode.start({ PORT: port, SSE_RETRY: "300 millis" })
        yield* live(page)
        yield* post(restarted, { channel: "e2e-restart", body: "after the restart" })
        yield* messageCount(page, 4)
        yield* settle
        // It came back with the id of the last message it had, and got what it missed.
        expect(lastEventIds).toContain(before.id)
        expect((yield* shown(page)).map((message) => message.body)).toEqual([
          "before the restart",
          "posted while down 1",
          "posted while down 2",
          "after the restart"
        ])
      }))

    it.scoped("opens the default channel when the URL's fragment is not valid %-encoding", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const { errors, page } = yield* Browser.open(node.url("/#%E0%A4"))
        yield* live(page)
        expect(yield* Effect.promise(() => page.inputValue("#channel"))).toBe("general")
        expect(errors).toEqual([])
      }))

    it.scoped("reloads the channel when the messages after its position have expired while it was away", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const firstRun = yield* Scope.make()
        const node = yield* TestNode.start({ SSE_RETRY: "300 millis" }).pipe(Scope.extend(firstRun))
        const port = new URL(node.url("/")).port
        const other = yield* TestNode.start()
        const { errors, page } = yield* Browser.open(node.url("/#e2e-expired"))
        yield* live(page)
        yield* post(node, { channel: "e2e-expired", body: "seen 1" })
        yield* post(node, { channel: "e2e-expired", body: "seen 2" })
        yield* messageCount(page, 2)

        yield* Scope.close(firstRun, Exit.void)
        yield* Effect.promise(() => page.waitForSelector("#status[data-state=\"reconnecting\"]"))
        const missed = yield* post(other, { channel: "e2e-expired", body: "missed, then expired" })
        // What retention does on some node: everything up to `missed` is deleted, and marked so.
        const { seq, txid } = messageIdParts(missed.id as MessageId)
        yield* sql`DELETE FROM messages WHERE channel = 'e2e-expired' AND (txid, id) <= (${txid}::xid8, ${seq}::bigint)`
        yield* sql`
          INSERT INTO message_retention (txid, id) VALUES (${txid}::xid8, ${seq}::bigint)
          ON CONFLICT (singleton) DO UPDATE SET txid = excluded.txid, id = excluded.id`
        yield* post(other, { channel: "e2e-expired", body: "kept" })

        yield* TestNode.start({ PORT: port, SSE_RETRY: "300 millis" })
        // Told that what followed its position is gone, the page shows the channel afresh.
        yield* eventually(shown(page), (messages) => messages.map((message) => message.body).join("|") === "kept", "20 seconds")
        yield* live(page)
        expect(errors).toEqual([])
      }))

    it.scoped("settles on an empty channel once retention has deleted messages: a few requests, then live", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`DELETE FROM messages`
        yield* sql`
          INSERT INTO messages (channel, author, body, created_at)
          SELECT 'e2e-elsewhere', 'archive', 'old ' || n, now() - interval '1 hour' FROM generate_series(1, 20) AS n`
        const node = yield* TestNode.start({ MESSAGE_RETENTION: "10 minutes", RETENTION_INTERVAL: "100 millis" })
        const count = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM messages`.pipe(Effect.map((rows) => rows[0]!.n))
        yield* eventually(count, (n) => n === 1, "30 seconds", "expired messages to be deleted")

        const { page } = yield* Browser.open(node.url("/#e2e-empty"))
        const requests = { history: 0, events: 0 }
        page.on("request", (request) => {
          const path = new URL(request.url()).pathname
          if (path === "/messages" && request.method() === "GET") requests.history++
          if (path === "/events") requests.events++
        })
        yield* live(page)
        yield* Effect.sleep("10 seconds")
        expect(requests.history, "GET /messages in 10 s").toBeLessThanOrEqual(2)
        expect(requests.events, "GET /events in 10 s").toBeLessThanOrEqual(2)
        yield* post(node, { channel: "e2e-empty", body: "at last" })
        yield* messageCount(page, 1)
      }))
  }
)
