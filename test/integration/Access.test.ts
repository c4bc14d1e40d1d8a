/**
 * Access control over real HTTP: tokens and their rights, anonymous rights, origins, rate limits
 * and stream caps, each rule on the router's routes and on the /events handler beside it.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import * as Http from "node:http"
import * as JwksServer from "../support/JwksServer.js"
import { asMessage, asPage, asRefusal, request } from "../support/Http.js"
import * as SseClient from "../support/SseClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"
import * as Tokens from "../support/Tokens.js"


const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

const post = (node: TestNode.TestNode, body: object, headers: Record<string, string> = {}) =>
  request(node.url("/messages"), {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body)
  })

const token = (rights: Tokens.Rights, options: Tokens.Options = {}) => Effect.promise(() => Tokens.hs256(rights, options))

interface OpenStream {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  /** The JSON body of a refusal. */
  readonly json: unknown
  /** Everything the stream sent so far. */
  readonly text: () => string
  readonly ended: () => boolean
  readonly close: () => void
}

/** GET /events on a connection of its own; resolves once the answer's headers (or whole refusal) arrived. */
const openStream = (url: string, headers: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.async<OpenStream>((resume) => {
      const req = Http.get(url, { agent: false, headers }, (response) => {
        let text = ""
        let ended = false
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => (text += chunk))
        response.on("end", () => {
          ended = true
          if (response.statusCode !== 200) resume(Effect.succeed(stream(JSON.parse(text))))
        })
        response.on("error", () => undefined)
        const stream = (json: unknown): OpenStream => ({
          status: response.statusCode ?? 0,
          headers: response.headers,
          json,
          text: () => text,
          ended: () => ended,
          close: () => req.destroy()
        })
        if (response.statusCode === 200) resume(Effect.succeed(stream(undefined)))
      })
      req.on("error", () => undefined)
    }),
    (stream) => Effect.sync(stream.close)
  )

/** The parts of /stats these tests read. */
const Figures = Schema.Struct({
  clients: Schema.Number,
  limits: Schema.Struct({ streams: Schema.Number, streamClients: Schema.Number, publishersTracked: Schema.Number })
})
const stats = (node: TestNode.TestNode, headers: Record<string, string> = {}) =>
  Effect.map(request(node.url("/stats"), { headers }), (reply) => Schema.decodeUnknownSync(Figures)(reply.json))

const auth = { AUTH_SECRET: Tokens.secret }

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("access control", (it) => {
  describe("tokens", () => {
    it.scoped("lets a token publish and read by pattern (name, prefix, everything) and refuses the rest with 403 naming the channel", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start(auth)
        const ada = bearer(yield* token({ publish: ["news", "team.*"], subscribe: ["team.*"] }))

        expect((yield* post(node, { channel: "news", body: "exact" }, ada)).status).toBe(201)
        expect((yield* post(node, { channel: "team.red", body: "prefix" }, ada)).status).toBe(201)
        for (const channel of ["team", "teams", "other"]) {
          const refused = yield* post(node, { channel, body: "no" }, ada)
          expect(refused.status, channel).toBe(403)
          expect(refused.json).toMatchObject({ error: "Forbidden", field: "channel" })
          expect(asRefusal(refused).message).toContain(`"${channel}"`)
        }

        expect(asPage(yield* request(node.url("/messages?channel=team.red"), { headers: ada })).messages).toHaveLength(1)
        const history = yield* request(node.url("/messages?channel=team.red&channel=news"), { headers: ada })
        expect(history.status).toBe(403)
        expect(asRefusal(history).message).toContain("\"news\"")
        const everyChannel = yield* request(node.url("/messages"), { headers: ada })
        expect(everyChannel.status).toBe(403)

        const allowed = yield* openStream(node.url("/events?channel=team.red&channel=team.blue"), ada)
        expect(allowed.status).toBe(200)
        const mixed = yield* openStream(node.url("/events?channel=team.red&channel=news"), ada)
        expect(mixed.status).toBe(403)
        expect(mixed.json).toMatchObject({ error: "Forbidden", field: "channel" })
        expect(asRefusal(mixed).message).toContain("\"news\"")
        // No channel means every channel, which needs subscribe rights on *.
        const all = yield* openStream(node.url("/events"), ada)
        expect(all.status).toBe(403)
        expect(asRefusal(all).message).toContain("every channel")

        const watcher = yield* token({ subscribe: ["*"] })
        const everything = yield* SseClient.connected(node.url("/events"), { headers: () => bearer(watcher) })
        yield* post(node, { channel: "team.green", body: "seen by *" }, ada)
        yield* everything.waitUntil(() => everything.messages.length === 1)
        expect(everything.bodies()).toEqual(["seen by *"])
      }))

    it.scoped("answers 401 with WWW-Authenticate: Bearer without a token, and to expired, early, forged, unsigned or malformed ones", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start(auth)
        const rights = { publish: ["*"], subscribe: ["*"] }

        const none = yield* post(node, { body: "who?" })
        expect(none.status).toBe(401)
        expect(none.headers.get("www-authenticate")).toBe("Bearer realm=\"pollcast\"")
        expect(none.json).toMatchObject({ error: "Unauthorized" })

        const refused: ReadonlyArray<readonly [string, string, RegExp]> = [
          ["expired", yield* token(rights, { expiresIn: -60 }), /expired/],
          ["not yet valid", yield* token(rights, { notBefore: 60 }), /not valid yet/],
          ["signed with another secret", yield* Effect.promise(() => Tokens.hs256(rights, {}, "another secret that is 32+ bytes long!!")), /signature/],
          ["alg: none", Tokens.unsigned(rights), /algorithm/],
          ["without sub", yield* token(rights, { sub: null }), /sub/],
          ["with a malformed claim", yield* token({ publish: ["not a pattern"] }), /pollcast\.publish/],
          ["not a JWT", "abc.def.ghi", /malformed/]
        ]
        for (const [what, jwt, reason] of refused) {
          for (const reply of [
            yield* post(node, { body: "x" }, bearer(jwt)),
            yield* request(node.url("/events?channel=general"), { headers: bearer(jwt) })
          ]) {
            expect(reply.status, what).toBe(401)
            expect(reply.headers.get("www-authenticate"), what).toMatch(/^Bearer realm="pollcast", error="invalid_token"/)
            expect(asRefusal(reply).message, what).toMatch(reason)
          }
        }
        const garbled = yield* post(node, { body: "x" }, { authorization: "Bearer not a token" })
        expect(garbled.status).toBe(401)
        const reader = bearer(yield* token({ subscribe: ["*"] }))
        expect(asPage(yield* request(node.url("/messages?channel=general"), { headers: reader })).messages).toEqual([])
      }))

    it.scoped("takes the token from the Authorization header, the cookie or the access_token parameter, in that order", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start(auth)
        const reader = yield* token({ subscribe: ["a"] })
        const url = node.url("/messages?channel=a")
        expect((yield* request(url, { headers: bearer(reader) })).status).toBe(200)
        expect((yield* request(url, { headers: { cookie: `theme=dark; pollcast_token=${reader}` } })).status).toBe(200)
        expect((yield* request(`${url}&access_token=${reader}`)).status).toBe(200)
        expect((yield* openStream(node.url(`/events?channel=a&access_token=${reader}`))).status).toBe(200)
        expect((yield* openStream(node.url("/events?channel=a"), { cookie: `pollcast_token=${reader}` })).status).toBe(200)
        // A bad header is not made good by a good cookie.
        const both = yield* request(url, { headers: { authorization: "Bearer x.y.z", cookie: `pollcast_token=${reader}` } })
        expect(both.status).toBe(401)
      }))

    it.scoped("grants requests without a token what ANONYMOUS_PUBLISH and ANONYMOUS_SUBSCRIBE say, nothing by default", () =>
      Effect.gen(function*() {
        const closed = yield* TestNode.start(auth)
        expect((yield* request(closed.url("/messages?channel=a"))).status).toBe(401)
        expect((yield* openStream(closed.url("/events?channel=a"))).status).toBe(401)
        expect((yield* post(closed, { channel: "a", body: "x" })).status).toBe(401)

        const node = yield* TestNode.start({ ...auth, ANONYMOUS_SUBSCRIBE: "public.*", ANONYMOUS_PUBLISH: "public.chat" })
        const posted = yield* post(node, { channel: "public.chat", author: "guest", body: "hello" })
        expect(posted.status).toBe(201)
        // Nobody vouched for that name: it is marked, so that it cannot pass for a token holder's.
        expect(asMessage(posted).author).toBe("~guest")
        const longName = yield* post(node, { channel: "public.chat", author: "g".repeat(64), body: "long" })
        expect(asMessage(longName).author).toBe(`~${"g".repeat(63)}`)
        expect((yield* post(node, { channel: "public.news", body: "x" })).status).toBe(401)
        expect(asPage(yield* request(node.url("/messages?channel=public.chat"))).messages).toHaveLength(2)
        expect((yield* openStream(node.url("/events?channel=public.news"))).status).toBe(200)
        const secret = yield* openStream(node.url("/events?channel=secret"))
        expect(secret.status).toBe(401)
        expect(asRefusal(secret).message).toContain("\"secret\"")
        // A token adds to what anonymous requests get.
        const member = bearer(yield* token({ subscribe: ["secret"] }))
        expect((yield* openStream(node.url("/events?channel=secret&channel=public.chat"), member)).status).toBe(200)
      }))

    it.scoped("stores a token holder's messages under its sub or pollcast.author, whatever the body says", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start(auth)
        const ada = bearer(yield* token({ publish: ["*"] }, { sub: "ada" }))
        const named = bearer(yield* token({ publish: ["*"], author: "Grace H." }, { sub: "user-1842" }))
        expect(asMessage(yield* post(node, { body: "one", author: "mallory" }, ada)).author).toBe("ada")
        expect(asMessage(yield* post(node, { body: "two" }, ada)).author).toBe("ada")
        expect(asMessage(yield* post(node, { body: "three", author: "ada" }, named)).author).toBe("Grace H.")
        const longSub = bearer(yield* token({ publish: ["*"] }, { sub: "x".repeat(65) }))
        const refused = yield* post(node, { body: "four" }, longSub)
        expect(refused.status).toBe(403)
        expect(asRefusal(refused).message).toContain("pollcast.author")
      }))

    it.scoped("with no key, lets everyone do everything and says so in one warning at start-up", () =>
      Effect.gen(function*() {
        const logs: Array<string> = []
        const node = yield* TestNode.start({}, { logs })
        expect(logs.filter((line) => line.includes("ACCESS CONTROL IS OFF"))).toHaveLength(1)
        expect(logs.find((line) => line.includes("ACCESS CONTROL IS OFF"))).toMatch(/^WARN/)
        expect((yield* post(node, { channel: "any", body: "open" })).status).toBe(201)
        expect((yield* openStream(node.url("/events"))).status).toBe(200)
        expect((yield* request(node.url("/stats"))).status).toBe(200)
        // A token is neither needed nor checked.
        expect(asMessage(yield* post(node, { channel: "any", body: "x", author: "bob" }, bearer("x.y.z"))).author).toBe("bob")

        const quiet: Array<string> = []
        yield* TestNode.start(auth, { logs: quiet })
        expect(quiet.filter((line) => line.includes("ACCESS CONTROL IS OFF"))).toEqual([])
      }))

    it.scoped("verifies RS256 tokens with AUTH_PUBLIC_KEY, and refuses an HS256 token signed with that public key", () =>
      Effect.gen(function*() {
        const rsa = yield* Effect.promise(() => Tokens.keyPair("RS256", "rsa-1"))
        // One line, as in an environment file.
        const node = yield* TestNode.start({ AUTH_PUBLIC_KEY: rsa.pem.replaceAll("\n", "\\n") })
        const good = yield* Effect.promise(() => Tokens.signed("RS256", rsa.privateKey, { publish: ["*"] }))
        expect((yield* post(node, { body: "rsa" }, bearer(good))).status).toBe(201)
        // The "key confusion" attack: the public key, which anyone has, used as an HMAC secret.
        const confused = yield* Effect.promise(() => Tokens.hs256({ publish: ["*"] }, {}, rsa.pem))
        const refused = yield* post(node, { body: "forged" }, bearer(confused))
        expect(refused.status).toBe(401)
        expect(asRefusal(refused).message).toMatch(/algorithm/)
      }))

    it.scoped("follows key rotation at AUTH_JWKS_URL (ES256, EdDSA), refuses removed keys, and answers 503 while the keys cannot be fetched", () =>
      Effect.gen(function*() {
        const jwks = yield* JwksServer.start
        const first = yield* Effect.promise(() => Tokens.keyPair("ES256", "2026-01"))
        const second = yield* Effect.promise(() => Tokens.keyPair("EdDSA", "2026-02"))
        jwks.serve([first.jwk])
        const node = yield* TestNode.start({ AUTH_JWKS_URL: jwks.url, AUTH_JWKS_COOLDOWN: "0 seconds" })
        const sign = (key: Tokens.KeyPair) =>
          Effect.promise(() => Tokens.signed(key.alg, key.privateKey, { publish: ["*"] }, { kid: key.kid }))
        const byFirst = bearer(yield* sign(first))
        const bySecond = bearer(yield* sign(second))

        expect((yield* post(node, { body: "first key" }, byFirst)).status).toBe(201)
        const fetchesBefore = jwks.fetches()
        expect((yield* post(node, { body: "first key again" }, byFirst)).status).toBe(201)
        expect(jwks.fetches()).toBe(fetchesBefore)
        // Not published yet: refused, as a key nobody knows.
        expect((yield* post(node, { body: "too early" }, bySecond)).status).toBe(401)

        // The issuer rotates: the second key is published, the first withdrawn.
        jwks.serve([second.jwk])
        expect((yield* post(node, { body: "second key" }, bySecond)).status).toBe(201)
        const withdrawn = yield* post(node, { body: "first key, withdrawn" }, byFirst)
        expect(withdrawn.status).toBe(401)
        expect(asRefusal(withdrawn).message).toMatch(/key/)

        jwks.setFailing(true)
        const third = yield* Effect.promise(() => Tokens.keyPair("ES256", "2026-03"))
        const unavailable = yield* post(node, { body: "cannot check" }, bearer(yield* sign(third)))
        expect(unavailable.status).toBe(503)
        expect(unavailable.headers.get("retry-after")).toBe("5")
        // Keys already fetched still work.
        expect((yield* post(node, { body: "still fine" }, bySecond)).status).toBe(201)
      }))

    it.scoped("ends a stream when its token expires; the client comes back with a fresh token and loses nothing", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ ...auth, AUTH_CLOCK_TOLERANCE: "0 seconds", SSE_RETRY: "100 millis" })
        const publisher = bearer(yield* token({ publish: ["*"] }))
        // exp is in whole seconds: this one ends between 2 and 3 seconds from now.
        const shortLived = yield* token({ subscribe: ["expiring"] }, { expiresIn: 3 })
        const expiresAt = JSON.parse(Buffer.from(shortLived.split(".")[1]!, "base64url").toString()).exp * 1000
        let current = shortLived
        const reconnectedAt: Array<number> = []
        const client = yield* SseClient.connected(node.url("/events?channel=expiring"), {
          headers: () => {
            reconnectedAt.push(Date.now())
            return bearer(current)
          }
        })
        // The client's next token, which it would fetch from its issuer.
        current = yield* token({ subscribe: ["expiring"] })

        // Publish steadily across the expiry.
        const sent = Array.from({ length: 40 }, (_, i) => `m${i}`)
        const publishing = yield* Effect.fork(Effect.forEach(sent, (body) =>
          Effect.zipRight(post(node, { channel: "expiring", body }, publisher), Effect.sleep("100 millis"))))
        yield* Fiber.join(publishing)
        yield* client.waitUntil(() => client.messages.length >= sent.length, "10 seconds")
        yield* Effect.sleep("300 millis")

        expect(client.bodies()).toEqual(sent)
        expect(client.opens()).toBe(2)
        // Ended at expiry, not before.
        expect(reconnectedAt[1]).toBeGreaterThanOrEqual(expiresAt)
        expect(reconnectedAt[1]! - expiresAt).toBeLessThan(2000)
        // The expired token itself is now refused.
        expect((yield* request(node.url("/events?channel=expiring"), { headers: bearer(shortLived) })).status).toBe(401)
      }))

    it.scoped("frees a stream's expiry timer and its count when the stream closes", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start(auth)
        const reader = bearer(yield* token({ subscribe: ["*"] }))
        const admin = bearer(yield* token({ admin: true }))
        const timers = () => process.getActiveResourcesInfo().filter((resource) => resource === "Timeout").length
        // Other timers of this process come and go too: hence the margins.
        const before = timers()
        const streams = yield* Effect.forEach(Array.from({ length: 200 }), () => openStream(node.url("/events?channel=t"), reader), {
          concurrency: 20
        })
        expect(timers() - before).toBeGreaterThanOrEqual(180)
        expect((yield* stats(node, admin)).limits.streams).toBe(200)
        for (const stream of streams) stream.close()
        yield* SseClient.eventually(stats(node, admin), (figures) => figures.limits.streams === 0 && figures.clients === 0)
        expect(timers() - before).toBeLessThan(20)
      }))
  })

  describe("origins", () => {
    it.scoped("refuses a browser that reaches the node by a name it was not given (DNS rebinding), on every route", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ ALLOWED_HOSTS: "chat.example.com, *.pollcast.test" })
        const port = new URL(node.url("/")).port
        const get = (path: string, headers: Record<string, string>) =>
          Effect.async<{ readonly status: number; readonly json: unknown }>((resume) => {
            Http.get(node.url(path), { headers, agent: false }, (response) => {
              let body = ""
              response.on("data", (chunk) => (body += chunk))
              response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, json: body.startsWith("{") ? JSON.parse(body) : body })))
            })
          })
        // What a page at evil.example, re-pointed at this node, sends: same-origin, by its own name.
        const browser = (host: string) => ({ host, "sec-fetch-mode": "cors", "sec-fetch-site": "same-origin" })
        for (const path of ["/messages?channel=a", "/stats", "/"]) {
          const refused = yield* get(path, browser(`evil.example:${port}`))
          expect(refused.status, path).toBe(403)
          expect(refused.json, path).toMatchObject({ error: "Forbidden", field: "Host" })
        }
        for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, "chat.example.com", "eu.pollcast.test"]) {
          expect((yield* get("/messages?channel=a", browser(host))).status, host).toBe(200)
        }
        // Programs are not held to it: no Origin, no Sec-Fetch-Mode.
        expect((yield* get("/messages?channel=a", { host: `evil.example:${port}` })).status).toBe(200)
      }))

    it.scoped("answers a preflight from an allowed origin with CORS headers, and refuses other origins", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ CORS_ORIGINS: "https://app.example, https://admin.example:8443" })
        const preflight = (path: string, origin: string) =>
          request(node.url(path), {
            method: "OPTIONS",
            headers: {
              origin,
              "access-control-request-method": "POST",
              "access-control-request-headers": "authorization, content-type"
            }
          })
        const allowed = yield* preflight("/messages", "https://app.example")
        expect(allowed.status).toBe(204)
        expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example")
        expect(allowed.headers.get("access-control-allow-methods")).toContain("POST")
        expect(allowed.headers.get("access-control-allow-headers")).toContain("authorization")
        expect(allowed.headers.get("access-control-allow-headers")).toContain("content-type")
        expect(allowed.headers.get("access-control-allow-credentials")).toBe("true")
        const events = yield* preflight("/events", "https://admin.example:8443")
        expect(events.status).toBe(204)
        expect(events.headers.get("access-control-allow-headers")).toContain("last-event-id")

        const refused = yield* preflight("/messages", "https://evil.example")
        expect(refused.status).toBe(403)
        expect(refused.headers.get("access-control-allow-origin")).toBeNull()
        expect(refused.json).toMatchObject({ error: "OriginNotAllowed", field: "Origin" })

        const posted = yield* post(node, { channel: "cors", body: "from the app" }, { origin: "https://app.example" })
        expect(posted.status).toBe(201)
        expect(posted.headers.get("access-control-allow-origin")).toBe("https://app.example")
        const stream = yield* openStream(node.url("/events?channel=cors"), { origin: "https://app.example" })
        expect(stream.headers["access-control-allow-origin"]).toBe("https://app.example")
        expect(stream.headers["vary"]).toBe("Origin")
        expect((yield* openStream(node.url("/events?channel=cors"), { origin: "https://evil.example" })).status).toBe(403)
        const read = yield* request(node.url("/messages?channel=cors"), { headers: { origin: "https://evil.example" } })
        expect(read.status).toBe(403)
      }))

    it.scoped("refuses the cross-site text/plain POST that needs no preflight, and any POST that is not JSON", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const send = (headers: Record<string, string>) =>
          request(node.url("/messages"), { method: "POST", headers, body: JSON.stringify({ channel: "csrf", body: "csrf" }) })
        const crossSite = yield* send({ origin: "https://evil.example", "content-type": "text/plain" })
        expect(crossSite.status).toBe(403)
        expect(asRefusal(crossSite).error).toBe("OriginNotAllowed")
        // Browsers that say where a request comes from are believed over the Origin's host.
        const sameSite = yield* send({
          origin: "https://chat.evil.example",
          "sec-fetch-site": "same-site",
          "content-type": "application/json"
        })
        expect(sameSite.status).toBe(403)

        const host = new URL(node.url("/")).host
        const notJson = yield* send({ origin: `http://${host}`, "content-type": "text/plain" })
        expect(notJson.status).toBe(415)
        expect(notJson.json).toMatchObject({ error: "UnsupportedMediaType", field: "content-type" })
        expect((yield* send({ "content-type": "application/x-www-form-urlencoded" })).status).toBe(415)
        expect(asPage(yield* request(node.url("/messages?channel=csrf"))).messages).toEqual([])

        expect((yield* send({ origin: `http://${host}`, "content-type": "application/json; charset=utf-8" })).status).toBe(201)
        // Behind a proxy that rewrites Host, the browser's Sec-Fetch-Site still tells.
        expect((yield* send({
          origin: "https://chat.example",
          "sec-fetch-site": "same-origin",
          "content-type": "application/json"
        })).status).toBe(201)
        expect((yield* send({ "content-type": "application/json" })).status).toBe(201)
      }))
  })

  describe("limits", () => {
    it.scoped("answers 429 with Retry-After once a publisher's burst is spent, each identity with its own bucket", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ ...auth, ANONYMOUS_PUBLISH: "*", PUBLISH_RATE: "0.5", PUBLISH_BURST: "3" })
        const ada = bearer(yield* token({ publish: ["*"] }, { sub: "ada" }))
        const bob = bearer(yield* token({ publish: ["*"] }, { sub: "bob" }))
        for (let i = 0; i < 3; i++) expect((yield* post(node, { body: `ada ${i}` }, ada)).status).toBe(201)
        const limited = yield* post(node, { body: "ada 3" }, ada)
        expect(limited.status).toBe(429)
        expect(asRefusal(limited).error).toBe("TooManyRequests")
        // One message every 2 seconds at 0.5 a second.
        expect(limited.headers.get("retry-after")).toBe("2")

        expect((yield* post(node, { body: "bob" }, bob)).status).toBe(201)
        for (let i = 0; i < 3; i++) expect((yield* post(node, { body: `anonymous ${i}` })).status).toBe(201)
        expect((yield* post(node, { body: "anonymous 3" })).status).toBe(429)

        yield* Effect.sleep("2 seconds")
        expect((yield* post(node, { body: "ada again" }, ada)).status).toBe(201)
        expect((yield* post(node, { body: "ada too soon" }, ada)).status).toBe(429)
      }))

    it.scoped("caps open streams per client address (429) and per node (503), with Retry-After, and frees a slot on close", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ MAX_STREAMS_PER_CLIENT: "2", MAX_STREAMS: "3", TRUST_PROXY: "1" })
        const from = (address: string) => ({ "x-forwarded-for": address })
        const a1 = yield* openStream(node.url("/events?channel=c"), from("192.0.2.1"))
        yield* openStream(node.url("/events?channel=c"), from("192.0.2.1"))
        const a3 = yield* openStream(node.url("/events?channel=c"), from("192.0.2.1"))
        expect([a1.status, a3.status]).toEqual([200, 429])
        expect(a3.headers["retry-after"]).toBe("5")
        expect(asRefusal(a3).message).toContain("MAX_STREAMS_PER_CLIENT")

        expect((yield* openStream(node.url("/events?channel=c"), from("192.0.2.2"))).status).toBe(200)
        const full = yield* openStream(node.url("/events?channel=c"), from("192.0.2.3"))
        expect(full.status).toBe(503)
        expect(full.headers["retry-after"]).toBe("5")
        expect(asRefusal(full).message).toContain("MAX_STREAMS")

        a1.close()
        yield* SseClient.eventually(stats(node), (figures) => figures.limits.streams === 2)
        expect((yield* openStream(node.url("/events?channel=c"), from("192.0.2.3"))).status).toBe(200)
      }))

    it.scoped("takes the client's address from X-Forwarded-For or Forwarded only with TRUST_PROXY, from the right", () =>
      Effect.gen(function*() {
        const events = (node: TestNode.TestNode, headers: Record<string, string>) =>
          Effect.map(openStream(node.url("/events?channel=p"), headers), (stream) => stream.status)

        const direct = yield* TestNode.start({ MAX_STREAMS_PER_CLIENT: "1" })
        expect(yield* events(direct, { "x-forwarded-for": "198.51.100.1" })).toBe(200)
        // Without TRUST_PROXY the header is anyone's to write: both come from this test's address.
        expect(yield* events(direct, { "x-forwarded-for": "198.51.100.2" })).toBe(429)

        const proxied = yield* TestNode.start({ MAX_STREAMS_PER_CLIENT: "1", TRUST_PROXY: "1" })
        expect(yield* events(proxied, { "x-forwarded-for": "203.0.113.9, 198.51.100.1" })).toBe(200)
        expect(yield* events(proxied, { "x-forwarded-for": "203.0.113.9, 198.51.100.2" })).toBe(200)
        // What a client writes to the left of what the proxy appended is not believed.
        expect(yield* events(proxied, { "x-forwarded-for": "203.0.113.77, 198.51.100.1" })).toBe(429)
        expect(yield* events(proxied, { forwarded: "for=\"[2001:db8:1:2::17]:4711\";proto=https" })).toBe(200)
        // The same /64 network is one client.
        expect(yield* events(proxied, { forwarded: "for=\"[2001:db8:1:2:ffff::1]\"" })).toBe(429)
        expect(yield* events(proxied, { forwarded: "for=\"[2001:db8:1:3::1]\"" })).toBe(200)

        const twoProxies = yield* TestNode.start({ MAX_STREAMS_PER_CLIENT: "1", TRUST_PROXY: "2" })
        expect(yield* events(twoProxies, { "x-forwarded-for": "198.51.100.1, 10.0.0.1" })).toBe(200)
        expect(yield* events(twoProxies, { "x-forwarded-for": "198.51.100.1, 10.0.0.2" })).toBe(429)
      }))

    it.scoped("forgets clients and publishers once they are gone: many addresses come and go, and the maps shrink back", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ TRUST_PROXY: "1", MAX_STREAMS_PER_CLIENT: "1", PUBLISH_RATE: "0.2", PUBLISH_BURST: "2" })
        const address = (i: number) => ({ "x-forwarded-for": `10.${(i >> 8) & 255}.${i & 255}.1` })
        const count = 400
        const streams = yield* Effect.forEach(
          Array.from({ length: count }, (_, i) => i),
          (i) => openStream(node.url("/events?channel=churn"), address(i)),
          { concurrency: 50 }
        )
        expect(streams.every((stream) => stream.status === 200)).toBe(true)
        expect((yield* stats(node)).limits).toMatchObject({ streamClients: count, streams: count })
        for (const stream of streams) stream.close()
        yield* SseClient.eventually(stats(node), (figures) => figures.limits.streamClients === 0 && figures.clients === 0)

        yield* Effect.forEach(
          Array.from({ length: count }, (_, i) => i),
          (i) => post(node, { channel: "churn", body: `from ${i}` }, address(i)),
          { concurrency: 50 }
        )
        expect((yield* stats(node)).limits.publishersTracked).toBeGreaterThan(count / 2)
        // Each bucket is full again 5 seconds after its one message (long enough for 400 POSTs on a
        // loaded machine to be counted before the first are forgotten); the next publisher finds the others gone.
        yield* Effect.sleep("5100 millis")
        yield* post(node, { channel: "churn", body: "last" }, address(count))
        expect((yield* stats(node)).limits.publishersTracked).toBe(1)
      }))
  })

  describe("operations endpoints", () => {
    it.scoped("keep /healthz and /readyz open, and /stats for tokens with the admin claim", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start(auth)
        expect((yield* request(node.url("/healthz"))).status).toBe(200)
        expect((yield* request(node.url("/readyz"))).status).toBe(200)
        const anonymous = yield* request(node.url("/stats"))
        expect(anonymous.status).toBe(401)
        expect(anonymous.headers.get("www-authenticate")).toBe("Bearer realm=\"pollcast\"")
        const member = yield* request(node.url("/stats"), { headers: bearer(yield* token({ subscribe: ["*"] })) })
        expect(member.status).toBe(403)
        const admin = yield* request(node.url("/stats"), { headers: bearer(yield* token({ admin: true })) })
        expect(admin.status).toBe(200)
        expect(admin.json).toMatchObject({ clients: 0, limits: { access: "tokens", streams: 0 } })
      }))
  })
})
