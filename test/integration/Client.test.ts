/**
 * The typed client (src/client/) against real nodes: the JSON endpoints through HttpApiClient, and
 * `events` following a channel across a restart of its node.
 */
import { FetchHttpClient } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import * as Http from "node:http"
import * as PollcastClient from "../../src/client/PollcastClient.js"
import type { Message } from "../../src/Domain/Message.js"
import * as SseClient from "../support/SseClient.js"
import * as TestClient from "../support/TestClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"
import * as Tokens from "../support/Tokens.js"

/** Runs `events` in the background, collecting what it yields. */
const follow = (stream: Stream.Stream<Message, PollcastClient.EventsRefused>) =>
  Effect.gen(function*() {
    const received: Array<Message> = []
    const fiber = yield* stream.pipe(Stream.runForEach((message) => Effect.sync(() => received.push(message))), Effect.forkScoped)
    return { received, fiber, bodies: () => received.map((message) => message.body) }
  })

/** Lets a late duplicate arrive before asserting. */
const settle = Effect.sleep("300 millis")

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("the typed client", (it) => {
  it.scoped("publishes and reads history through the declared endpoints, and gets declared errors as values", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start()
      const client = yield* TestClient.of(node)
      const stored = yield* client.publish({ channel: "typed", body: "hello" })
      expect(stored).toMatchObject({ channel: "typed", author: "anonymous", body: "hello" })
      expect(stored.createdAt).toBeInstanceOf(Date)
      yield* SseClient.eventually(client.history({ channel: "typed" }), (page) => page.messages.length === 1)
      const page = yield* client.history({ channel: "typed", limit: 10 })
      expect(page.messages.map((message) => message.id)).toEqual([stored.id])
      expect(page.lastEventId).toBe(stored.id)

      // The declaration's schema refuses a malformed channel before sending; the server, what only it can tell.
      expect(yield* Effect.flip(client.publish({ channel: "not a channel", body: "x" }))).toMatchObject({ _tag: "ParseError" })
      const ahead = yield* Effect.flip(client.history({ after: "7fffffffffffffff-0000000000000001" }))
      expect(ahead).toMatchObject({ _tag: "InvalidRequest", field: "after" })
    }))

  it.scoped("follows a channel across a restart of its node, receiving every message once, in order", () =>
    Effect.gen(function*() {
      const channel = "client-restart"
      const firstRun = yield* Scope.make()
      const node = yield* TestNode.start({ SSE_RETRY: "100 millis" }).pipe(Scope.extend(firstRun))
      const port = new URL(node.url("/")).port
      const other = yield* TestNode.start()
      const client = yield* TestClient.of(node)
      const writer = yield* TestClient.of(other)
      const followed = yield* follow(client.events({ channels: [channel] }))
      yield* SseClient.eventually(node.connections, (open) => open === 1, "10 seconds", "the client to connect")

      yield* writer.publish({ channel, body: "before" })
      yield* SseClient.waitUntil(() => followed.received.length === 1)

      yield* Scope.close(firstRun, Exit.void)
      for (const body of ["while down 1", "while down 2"]) yield* writer.publish({ channel, body })
      const restarted = yield* TestNode.start({ PORT: port })
      yield* SseClient.eventually(restarted.connections, (open) => open === 1, "20 seconds", "the client to reconnect")
      yield* writer.publish({ channel, body: "after" })
      yield* SseClient.waitUntil(() => followed.received.length >= 4, "20 seconds")
      yield* settle
      expect(followed.bodies()).toEqual(["before", "while down 1", "while down 2", "after"])
      const ids = followed.received.map((message) => message.id)
      expect([...ids].sort()).toEqual(ids)
      expect(yield* Fiber.poll(followed.fiber)).toEqual(Option.none())
    }))

  it.scoped("starts after lastEventId, and on a reset continues from the position the server names", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start()
      const client = yield* TestClient.of(node)
      const first = yield* client.publish({ channel: "resumed", body: "first" })
      yield* client.publish({ channel: "resumed", body: "second" })
      yield* SseClient.eventually(client.history({ channel: "resumed" }), (page) => page.messages.length === 2)
      const resumed = yield* client.events({ channels: ["resumed"], lastEventId: first.id }).pipe(Stream.take(1), Stream.runCollect)
      expect(Chunk.toReadonlyArray(resumed).map((message) => message.body)).toEqual(["second"])

      const resets: Array<PollcastClient.Reset> = []
      const ahead = yield* follow(client.events({
        channels: ["resumed"],
        lastEventId: "7fffffffffffffff-7fffffffffffffff",
        onReset: (reset) => Effect.sync(() => resets.push(reset))
      }))
      yield* SseClient.waitUntil(() => resets.length === 1)
      expect(resets[0]).toMatchObject({ reason: "ahead" })
      yield* client.publish({ channel: "resumed", body: "live" })
      yield* SseClient.waitUntil(() => ahead.received.length === 1)
      expect(ahead.bodies()).toEqual(["live"])
    }))

  it.scoped("takes a stream silent past idleTimeout for dead, and reconnects from the last message it got", () =>
    Effect.gen(function*() {
      // A server that sends one message on the first connection and then nothing, not even heartbeats.
      const lastEventIds: Array<string | undefined> = []
      const message = { id: "0000000000000001-0000000000000001", channel: "silent", author: "a", body: "only", createdAt: new Date().toISOString() }
      const server = yield* Effect.acquireRelease(
        Effect.async<Http.Server>((resume) => {
          const server = Http.createServer((request, response) => {
            lastEventIds.push(request.headers["last-event-id"] as string | undefined)
            response.writeHead(200, { "content-type": "text/event-stream" })
            response.write("retry: 100\n\n")
            if (lastEventIds.length === 1) response.write(`id: ${message.id}\nevent: message\ndata: ${JSON.stringify(message)}\n\n`)
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.sync(() => server.closeAllConnections())
      )
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const client = yield* PollcastClient.make({ baseUrl: `http://127.0.0.1:${port}` }).pipe(Effect.provide(FetchHttpClient.layer))
      const followed = yield* follow(client.events({ channels: ["silent"], idleTimeout: "300 millis" }))
      yield* SseClient.waitUntil(() => lastEventIds.length >= 3, "10 seconds", "reconnections")
      expect(lastEventIds.slice(0, 3)).toEqual([undefined, message.id, message.id])
      expect(followed.bodies()).toEqual(["only"])
    }))

  it.scoped("sends its token, and ends the stream with EventsRefused when the token may not read", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
      const token = yield* Effect.promise(() => Tokens.hs256({ publish: ["mine"], subscribe: ["mine"] }))
      const client = yield* TestClient.of(node, { token: Effect.succeed(token) })
      expect(yield* client.publish({ channel: "mine", body: "signed" })).toMatchObject({ author: "ada" })
      const refused = yield* Effect.flip(Stream.runDrain(client.events({ channels: ["theirs"] })))
      expect(refused).toMatchObject({ _tag: "EventsRefused", status: 403 })
      const forbidden = yield* Effect.flip(client.publish({ channel: "theirs", body: "no" }))
      expect(forbidden).toMatchObject({ _tag: "Forbidden", field: "channel" })
    }))
})
