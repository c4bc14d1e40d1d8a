import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Http from "node:http"
import * as Net from "node:net"
import { asMessage, asPage, asRefusal, request } from "../support/Http.js"
import * as SseClient from "../support/SseClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"


const post = (url: string, body: unknown) =>
  request(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

/** Sends a request with raw node:http, to control the framing of its body. */
const rawPost = (url: string, headers: Record<string, string>, chunks: ReadonlyArray<string>) =>
  Effect.async<{ status: number; json: unknown }, Error>((resume) => {
    const req = Http.request(url, { method: "POST", headers }, (res) => {
      let text = ""
      res.on("data", (chunk) => (text += chunk))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, json: JSON.parse(text) })))
    })
    req.on("error", (error) => resume(Effect.fail(error)))
    for (const chunk of chunks) req.write(chunk)
    // Deliberately never ends a request whose declared length is larger than what was written.
    if (headers["content-length"] === undefined || Number(headers["content-length"]) <= chunks.join("").length) {
      req.end()
    }
  })

layer(TestDatabase.layer, { timeout: 60_000, excludeTestServices: true })("HTTP API", (it) => {
  describe("POST /messages", () => {
    it.scoped("stores a message and answers 201 with it, defaults filled in", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const reply = yield* post(node.url("/messages"), { body: "hello" })
        expect(reply.status).toBe(201)
        expect(reply.json).toMatchObject({ channel: "general", author: "anonymous", body: "hello" })
        expect(asMessage(reply).id).toMatch(/^[0-9a-f]{16}-[0-9a-f]{16}$/)
        expect(asMessage(reply).createdAt.getTime()).toBeGreaterThan(Date.now() - 60_000)

        const named = yield* post(node.url("/messages"), { channel: "ops.alerts:eu-1", author: "Zoë 🚀", body: "a\nb" })
        expect(named.status).toBe(201)
        expect(named.json).toMatchObject({ channel: "ops.alerts:eu-1", author: "Zoë 🚀", body: "a\nb" })
        expect(asMessage(named).id > asMessage(reply).id).toBe(true)
      }))

    it.scoped("answers each of many concurrent posts with its own message, all in one order", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const sent = Array.from({ length: 200 }, (_, i) => ({ channel: "burst", author: `author ${i}`, body: `burst ${i}` }))
        const replies = yield* Effect.forEach(sent, (message) => post(node.url("/messages"), message), {
          concurrency: "unbounded"
        })
        expect(replies.map((reply) => reply.status)).toEqual(sent.map(() => 201))
        const stored = replies.map(asMessage)
        expect(stored.map(({ author, body, channel }) => ({ channel, author, body }))).toEqual(sent)
        stored.sort((a, b) => (a.id < b.id ? -1 : 1))
        expect(new Set(stored.map((message) => message.id)).size).toBe(sent.length)

        const history = yield* request(node.url("/messages?channel=burst&limit=500"))
        expect(asPage(history).messages).toEqual(stored)
      }))

    it.scoped("answers 400 naming the field for each kind of invalid message", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ MAX_BODY_BYTES: "10" })
        const cases: ReadonlyArray<readonly [unknown, string]> = [
          [{}, "body"],
          [{ body: "" }, "body"],
          [{ body: 42 }, "body"],
          [{ body: "ééééé!" }, "body"], // 11 bytes of UTF-8, 6 characters
          [{ body: "nul\u0000" }, "body"],
          [{ body: "x", channel: "" }, "channel"],
          [{ body: "x", channel: "has space" }, "channel"],
          [{ body: "x", channel: "c".repeat(65) }, "channel"],
          [{ body: "x", author: "" }, "author"],
          [{ body: "x", author: "a".repeat(65) }, "author"],
          [{ body: "x", chanel: "typo" }, "chanel"]
        ]
        for (const [body, field] of cases) {
          const reply = yield* post(node.url("/messages"), body)
          expect(reply.status, JSON.stringify(body)).toBe(400)
          expect(reply.json).toMatchObject({ error: "InvalidRequest", field })
          expect(asRefusal(reply).message).toMatch(new RegExp(`^${field}: `))
        }
        const atLimit = yield* post(node.url("/messages"), { body: "é".repeat(5) })
        expect(atLimit.status).toBe(201)
      }))

    it.scoped("answers 400 to a body that is not a JSON object", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        for (const body of ["not json", "", "[1,2]", "\"body\"", "null"]) {
          const reply = yield* post(node.url("/messages"), body)
          expect(reply.status, body).toBe(400)
          expect(asRefusal(reply).error).toBe("InvalidRequest")
          expect(asRefusal(reply).message.length).toBeGreaterThan(10)
        }
      }))

    it.scoped("answers 413 to a request body over the limit, declared or streamed, and keeps serving", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ MAX_BODY_BYTES: "100" })
        // The limit on the request is 6 * 100 + 2048 bytes: enough for any escaped 100-byte body.
        const escaped = yield* post(node.url("/messages"), { body: "\u0001".repeat(100) })
        expect(escaped.status).toBe(201)

        const json = { "content-type": "application/json" }
        const declared = yield* rawPost(node.url("/messages"), { ...json, "content-length": "1000000" }, ["{\"body\":\""])
        expect(declared.status).toBe(413)
        expect(asRefusal(declared).error).toBe("PayloadTooLarge")

        const streamed = yield* rawPost(node.url("/messages"), { ...json, "transfer-encoding": "chunked" }, [
          "{\"body\":\"",
          "x".repeat(4000),
          "\"}"
        ])
        expect(streamed.status).toBe(413)

        const after = yield* post(node.url("/messages"), { body: "still fine" })
        expect(after.status).toBe(201)
      }))
  })

  describe("GET /messages", () => {
    it.scoped("pages through a channel's history in delivery order", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const ids: Array<string> = []
        for (let i = 1; i <= 7; i++) {
          ids.push(asMessage(yield* post(node.url("/messages"), { channel: "paging", body: `m${i}` })).id)
          yield* post(node.url("/messages"), { channel: "elsewhere", body: `other ${i}` })
        }

        const newestReply = yield* request(node.url("/messages?channel=paging&limit=3"))
        expect(newestReply.status).toBe(200)
        const newest = asPage(newestReply)
        expect(newest.messages.map((m) => m.body)).toEqual(["m5", "m6", "m7"])
        expect(newest.next).toBeNull()
        expect(newest.previous).toBe(ids[4])
        expect(newest.lastEventId).toBe(ids[6])

        const older = asPage(yield* request(node.url(`/messages?channel=paging&limit=3&before=${newest.previous}`)))
        expect(older.messages.map((m) => m.body)).toEqual(["m2", "m3", "m4"])
        const oldest = asPage(yield* request(node.url(`/messages?channel=paging&limit=3&before=${older.previous}`)))
        expect(oldest.messages.map((m) => m.body)).toEqual(["m1"])
        expect(oldest.previous).toBeNull()

        const first = asPage(yield* request(node.url(`/messages?channel=paging&limit=4&after=${oldest.lastEventId}`)))
        expect(first.messages.map((m) => m.body)).toEqual(["m2", "m3", "m4", "m5"])
        expect(first.next).toBe(ids[4])
        const rest = asPage(yield* request(node.url(`/messages?channel=paging&limit=4&after=${first.next}`)))
        expect(rest.messages.map((m) => m.body)).toEqual(["m6", "m7"])
        expect(rest.next).toBeNull()
        expect(rest.lastEventId).toBe(ids[6])

        const both = asPage(yield* request(node.url("/messages?channel=paging&channel=elsewhere&limit=4")))
        expect(both.messages.map((m) => m.body)).toEqual(["m6", "other 6", "m7", "other 7"])
      }))

    it.scoped("gives a lastEventId to go live from even when a channel is empty", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const empty = yield* request(node.url("/messages?channel=nothing-here"))
        expect(empty.json).toEqual({ messages: [], next: null, previous: null, lastEventId: expect.any(String) })
      }))

    it.scoped("answers 400 naming the parameter for bad query parameters", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const cases: ReadonlyArray<readonly [string, string]> = [
          ["limit=0", "limit"],
          ["limit=501", "limit"],
          ["limit=ten", "limit"],
          ["limit=1.5", "limit"],
          ["after=42", "after"],
          ["before=zz", "before"],
          ["channel=no%20spaces", "channel"],
          ["channel=ok&channel=", "channel"],
          [`after=${"0".repeat(16)}-${"0".repeat(16)}&before=${"0".repeat(16)}-${"0".repeat(16)}`, "before"]
        ]
        for (const [query, field] of cases) {
          const reply = yield* request(node.url(`/messages?${query}`))
          expect(reply.status, query).toBe(400)
          expect(reply.json).toMatchObject({ error: "InvalidRequest", field })
        }
      }))
  })

  describe("text that PostgreSQL cannot hold as given", () => {
    it.scoped("answers 400 naming the field for a lone surrogate, and for an author of only spaces", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        // Written as JSON escapes: JSON.stringify would not produce them from a JavaScript string.
        for (const [text, field] of [
          [`{"body": "x\\ud800y"}`, "body"],
          [`{"body": "x\\udc00"}`, "body"],
          [`{"body": "ok", "author": "\\ud83d"}`, "author"],
          [`{"body": "ok", "author": "   "}`, "author"]
        ] as const) {
          const reply = yield* post(node.url("/messages"), text)
          expect(reply.status, text).toBe(400)
          expect(reply.json, text).toMatchObject({ error: "InvalidRequest", field })
        }
        // A whole surrogate pair is fine, and an author is stored trimmed.
        const fine = yield* post(node.url("/messages"), `{"channel": "unicode", "body": "\\ud83d\\ude80", "author": "  ada  "}`)
        expect(fine.status).toBe(201)
        expect(fine.json).toMatchObject({ body: "🚀", author: "ada" })
        yield* SseClient.eventually(request(node.url("/messages?channel=unicode")), (reply) => asPage(reply).messages.length === 1)
      }))
  })

  describe("ids the server never issued", () => {
    const tooLarge = "0000000000000000-8000000000000000"
    const ahead = "7fffffffffffffff-7fffffffffffffff"

    it.scoped("answers 400 naming the field for an id beyond what the database can hold", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        for (const parameter of ["after", "before"]) {
          const reply = yield* request(node.url(`/messages?${parameter}=${tooLarge}`))
          expect(reply.status, parameter).toBe(400)
          expect(reply.json).toMatchObject({ error: "InvalidRequest", field: parameter })
        }
        const header = yield* request(node.url("/events"), { headers: { "last-event-id": tooLarge } })
        expect(header.status).toBe(400)
        expect(header.json).toMatchObject({ error: "InvalidRequest", field: "Last-Event-ID" })
        const query = yield* request(node.url(`/events?lastEventId=${tooLarge}`))
        expect(query.json).toMatchObject({ error: "InvalidRequest", field: "lastEventId" })
      }))

    it.scoped("answers 400 to a history page after an id ahead of the newest message", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const posted = yield* post(node.url("/messages"), { channel: "ahead", body: "newest" })
        yield* SseClient.eventually(request(node.url(`/messages?channel=ahead`)), (reply) => asPage(reply).messages.length === 1)
        const reply = yield* request(node.url(`/messages?channel=ahead&after=${ahead}`))
        expect(reply.status).toBe(400)
        expect(reply.json).toMatchObject({ error: "InvalidRequest", field: "after" })
        expect(asRefusal(reply).message).toContain(asMessage(posted).id)
        // The newest id itself is where an honest client stands: an empty page, no error.
        const caughtUp = yield* request(node.url(`/messages?channel=ahead&after=${asMessage(posted).id}`))
        expect(caughtUp.status).toBe(200)
        expect(caughtUp.json).toMatchObject({ messages: [], lastEventId: asMessage(posted).id })
      }))

    it.scoped("tells an /events client resuming from an id ahead of the newest message where it continues, then delivers live", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const before = yield* post(node.url("/messages"), { channel: "resume-ahead", body: "before" })
        // Newer, on a channel the client does not follow: the reset must not tell it this one's id.
        const elsewhere = yield* post(node.url("/messages"), { channel: "resume-elsewhere", body: "newer" })
        yield* SseClient.eventually(request(node.url(`/messages`)), (reply) => asPage(reply).lastEventId === asMessage(elsewhere).id)
        const client = yield* SseClient.connected(node.url("/events?channel=resume-ahead"), { lastEventId: ahead })
        yield* client.waitUntil(() => client.resets.length > 0)
        expect(client.resets).toEqual([{ id: asMessage(before).id, reason: "ahead", lastEventId: asMessage(before).id }])
        const live = yield* post(node.url("/messages"), { channel: "resume-ahead", body: "live" })
        yield* client.waitUntil(() => client.messages.length === 1)
        expect(client.messages.map((message) => message.id)).toEqual([asMessage(live).id])
        expect(client.opens()).toBe(1)
      }))
  })

  describe("other routes", () => {
    it.scoped("GET /events answers 400 to a malformed Last-Event-ID or channel", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const header = yield* request(node.url("/events"), { headers: { "last-event-id": "41" } })
        expect(header.status).toBe(400)
        expect(header.json).toMatchObject({ error: "InvalidRequest", field: "Last-Event-ID" })
        const query = yield* request(node.url("/events?lastEventId=41"))
        expect(query.json).toMatchObject({ error: "InvalidRequest", field: "lastEventId" })
        const channel = yield* request(node.url("/events?channel=a%0Ab"))
        expect(channel.json).toMatchObject({ error: "InvalidRequest", field: "channel" })
      }))

    it.scoped("GET /events takes an empty Last-Event-ID or lastEventId as none: live from now", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const header = yield* SseClient.connected(node.url("/events?channel=empty-id"), { lastEventId: "" })
        const query = yield* SseClient.connected(node.url("/events?channel=empty-id&lastEventId="))
        yield* post(node.url("/messages"), { channel: "empty-id", body: "live" })
        yield* header.waitUntil(() => header.messages.length === 1)
        yield* query.waitUntil(() => query.messages.length === 1)
        expect([header.messages[0]?.body, query.messages[0]?.body]).toEqual(["live", "live"])
      }))

    it.scoped("GET /events keeps one connection open across messages, with nothing failing", () =>
      Effect.gen(function*() {
        const logs: Array<string> = []
        const node = yield* TestNode.start({}, { logs })
        const client = yield* SseClient.connected(node.url("/events?channel=steady"))
        yield* post(node.url("/messages"), { channel: "steady", body: "one" })
        yield* client.waitUntil(() => client.messages.length === 1)
        yield* post(node.url("/messages"), { channel: "steady", body: "two" })
        yield* client.waitUntil(() => client.messages.length === 2)
        // A stream that ended after each message would lose nothing (the client resumes with
        // Last-Event-ID), so this is what tells a healthy stream apart.
        expect(client.opens()).toBe(1)
        expect(logs.filter((line) => /^(ERROR|FATAL)|unhandled error/i.test(line))).toEqual([])
      }))

    it.scoped("serves the page and its assets with their types, cache headers and revalidation", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const page = yield* Effect.promise(() => fetch(node.url("/")))
        const html = yield* Effect.promise(() => page.text())
        expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8")
        expect(page.headers.get("cache-control")).toBe("no-cache")
        expect(page.headers.get("content-security-policy")).toContain("default-src 'self'")
        const etag = page.headers.get("etag")!
        const again = yield* Effect.promise(() => fetch(node.url("/"), { headers: { "if-none-match": etag } }))
        expect(again.status).toBe(304)

        const assets = [...html.matchAll(/(?:href|src)="(\/assets\/[^"]+)"/g)].map((match) => match[1]!)
        expect(assets).toHaveLength(3)
        const types: Record<string, string> = {
          js: "text/javascript; charset=utf-8",
          css: "text/css; charset=utf-8",
          svg: "image/svg+xml"
        }
        for (const asset of assets) {
          // Content-hashed names: cacheable for a year, never stale.
          expect(asset).toMatch(/^\/assets\/[a-z]+\.[0-9a-f]{16}\.(js|css|svg)$/)
          const response = yield* Effect.promise(() => fetch(node.url(asset)))
          expect(response.status).toBe(200)
          expect(response.headers.get("content-type")).toBe(types[asset.split(".").pop()!])
          expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
        }
        expect((yield* request(node.url("/assets/app.0000000000000000.js"))).status).toBe(404)
      }))

    it.scoped("keeps an idle keep-alive connection open longer than proxies do, and says for how long", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const socket = yield* Effect.acquireRelease(
          Effect.sync(() => Net.connect(Number(new URL(node.url("/")).port), "127.0.0.1")),
          (socket) => Effect.sync(() => socket.destroy())
        )
        let received = ""
        socket.on("data", (chunk) => (received += chunk))
        const ask = () => {
          received = ""
          socket.write("GET /healthz HTTP/1.1\r\nHost: pollcast\r\n\r\n")
          return SseClient.waitUntil(() => received.includes("\r\n\r\n{\"status\":\"ok\"}"), "5 seconds", "an answer")
        }
        yield* ask()
        expect(received).toMatch(/\r\nKeep-Alive: timeout=65\r\n/i)
        // Past Node's default of 5 seconds, the same connection still serves.
        yield* Effect.sleep("5500 millis")
        expect(socket.destroyed).toBe(false)
        yield* ask()
        expect(received).toMatch(/^HTTP\/1\.1 200 OK/)
      }), 20_000)

    it.scoped("answers unknown routes with a 404 JSON error, health checks with 200", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const missing = yield* request(node.url("/nowhere"))
        expect(missing.status).toBe(404)
        expect(asRefusal(missing).error).toBe("NotFound")
        expect((yield* request(node.url("/healthz"))).json).toEqual({ status: "ok" })
        const ready = yield* request(node.url("/readyz"))
        expect(ready.status).toBe(200)
        expect(ready.json).toMatchObject({ status: "ready", database: "reachable", poller: "polling" })
      }))
  })
})
