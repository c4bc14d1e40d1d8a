/**
 * What a client can make a node hold is bounded and freed: channel selections live as long as a
 * client uses them, and a resuming client that does not read is cut off with little queued.
 * Against a real PostgreSQL, over real HTTP.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Context, Effect } from "effect"
import * as Http from "node:http"
import * as Net from "node:net"
import { EventStream } from "../../src/Delivery/EventStream.js"
import { beginning } from "../../src/Domain/Message.js"
import { liveArrayBufferBytes, liveHeapBytes, megabytes } from "../support/Heap.js"
import * as SseClient from "../support/SseClient.js"
import { eventually } from "../support/SseClient.js"
import * as TestClient from "../support/TestClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

const liveHeap = Effect.sync(liveHeapBytes)

/** A connection that never sends anything; `closed` completes when the node closes it. */
const silentSocket = (port: number) =>
  Effect.async<{ readonly socket: Net.Socket; readonly closed: Effect.Effect<void> }>((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    const closed = Effect.async<void>((done) => {
      if (socket.destroyed) return done(Effect.void)
      socket.once("close", () => done(Effect.void))
    })
    socket.on("error", () => socket.destroy())
    socket.once("connect", () => resume(Effect.succeed({ socket, closed })))
  })

const randomName = () => Math.random().toString(36).slice(2).padEnd(12, "x").repeat(3)

/** Opens /events on `path`, waits for the stream's first bytes, and closes the connection. */
const openAndClose = (url: string) =>
  Effect.async<void, Error>((resume) => {
    const request = Http.get(url, { agent: false }, (response) => {
      response.once("data", () => {
        request.destroy()
        resume(Effect.void)
      })
    })
    request.on("error", (error) => {
      if (!request.destroyed) resume(Effect.fail(error))
    })
  })

layer(TestDatabase.layer, { timeout: 300_000, excludeTestServices: true })("bounds", (it) => {
  it.scoped("frees the selections of 10,000 distinct channel sets once their streams close", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start({ HEARTBEAT_INTERVAL: "1 hour" })
      const eventStream = Context.get(node.context, EventStream)
      const channelSets = (count: number) =>
        Array.from({ length: count }, () =>
          `/events?${Array.from({ length: 20 }, () => `channel=${randomName()}`).join("&")}`)
      const openAll = (paths: ReadonlyArray<string>) =>
        Effect.forEach(paths, (path) => openAndClose(node.url(path)), { concurrency: 50, discard: true }).pipe(
          Effect.zipRight(eventually(eventStream.connections, (open) => open === 0, "30 seconds", "every stream to close"))
        )

      // Warm up (code paths, the server's pools), then measure.
      yield* openAll(channelSets(500))
      const before = yield* liveHeap
      yield* openAll(channelSets(10_000))
      const after = yield* liveHeap

      expect(yield* eventStream.selections).toBe(0)
      expect(megabytes(after - before), "MB of live heap kept").toBeLessThan(5)
    }))

  it.scoped("closes connections that send no request within FIRST_REQUEST_TIMEOUT and frees them, never an open stream", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start({ FIRST_REQUEST_TIMEOUT: "1 second", MAX_CONNECTIONS_PER_CLIENT: "0" })
      const port = Number(new URL(node.url("/")).port)
      const stream = yield* SseClient.connected(node.url("/events?channel=silent"))
      const flood = (count: number) =>
        Effect.forEach(Array.from({ length: count }), () => silentSocket(port), { concurrency: 100 }).pipe(
          Effect.flatMap((sockets) => Effect.forEach(sockets, (socket) => socket.closed, { concurrency: "unbounded" }))
        )
      yield* flood(100)
      const before = yield* liveHeap
      // Each is closed by the node (the client only waits): without the limit, after Node's 66 s.
      yield* flood(1_500).pipe(Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error("silent connections still open") }))
      const after = yield* liveHeap
      expect(megabytes(after - before), "MB of live heap kept").toBeLessThan(3)
      // The stream, open well past the timeout, still delivers.
      yield* TestClient.publish(node, { channel: "silent", body: "still here" })
      yield* stream.waitUntil(() => stream.bodies().includes("still here"))
      expect(stream.opens()).toBe(1)
    }))

  it.scoped("keeps a stream whose client sends more after its request, holding none of it, and frees one whose client ends its side", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start()
      const port = Number(new URL(node.url("/")).port)
      const { closed, socket } = yield* silentSocket(port)
      let received = ""
      socket.on("data", (chunk: Buffer) => {
        received += chunk.toString()
      })
      socket.write("GET /events?channel=raw HTTP/1.1\r\nHost: pollcast\r\n\r\n")
      yield* eventually(Effect.sync(() => received), (text) => text.includes("retry:"), "5 seconds", "the stream's head")
      expect(received.startsWith("HTTP/1.1 200")).toBe(true)
      const before = yield* liveHeap
      // 8 MB more: another request, then bytes that are none. Read and dropped, never answered.
      socket.write("POST /messages HTTP/1.1\r\nHost: pollcast\r\ncontent-type: application/json\r\ncontent-length: 30\r\n\r\n")
      const junk = Buffer.alloc(64 * 1024, "x")
      for (let i = 0; i < 128; i++) {
        yield* Effect.async<void>((resume) => {
          socket.write(junk, () => resume(Effect.void))
        })
      }
      yield* TestClient.publish(node, { channel: "raw", body: "after the junk" })
      yield* eventually(Effect.sync(() => received), (text) => text.includes("after the junk"), "5 seconds", "the message")
      expect(megabytes((yield* liveHeap) - before), "MB of live heap kept").toBeLessThan(3)
      expect(received).not.toContain("HTTP/1.1 201")
      expect(yield* node.connections).toBe(1)
      // The client ends its side: the node closes the connection and frees the stream.
      socket.end()
      yield* closed.pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the connection stayed open") }))
      yield* eventually(node.connections, (open) => open === 0, "5 seconds", "the stream to be freed")
    }))

  it.scoped("refuses connections beyond MAX_CONNECTIONS_PER_CLIENT from one address, and serves other addresses", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start({ MAX_CONNECTIONS_PER_CLIENT: "50" })
      const port = Number(new URL(node.url("/")).port)
      const held = yield* Effect.forEach(Array.from({ length: 60 }), () => silentSocket(port), { concurrency: 1 })
      const refused = yield* Effect.forEach(held.slice(50), (socket) => socket.closed.pipe(Effect.timeout("5 seconds")))
      expect(refused.length).toBe(10)
      const health = (localAddress: string) =>
        Effect.async<number, Error>((resume) => {
          const request = Http.get(node.url("/healthz"), { agent: false, localAddress }, (response) => {
            response.resume()
            resume(Effect.succeed(response.statusCode ?? 0))
          })
          request.on("error", (error) => resume(Effect.fail(error)))
        })
      expect(yield* health("127.0.0.2")).toBe(200)
      expect(yield* Effect.either(health("127.0.0.1"))).toMatchObject({ _tag: "Left" })
      held.forEach((socket) => socket.socket.destroy())
      yield* eventually(Effect.either(health("127.0.0.1")), (answer) => answer._tag === "Right", "5 seconds", "the address to be served again")
    }))

  it.scoped("cuts off 20 resuming clients that never read, each with little queued, and frees them", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // 400 messages of 16 KiB that take six bytes each once escaped in JSON: ~39 MB per replay.
      yield* sql`
        INSERT INTO messages (channel, author, body)
        SELECT 'backlog', 'bulk', repeat(chr(1), 16384) FROM generate_series(1, 400)`
      const node = yield* TestNode.start({ CLIENT_STALL_TIMEOUT: "2 seconds", HEARTBEAT_INTERVAL: "1 hour" })
      const eventStream = Context.get(node.context, EventStream)
      yield* eventually(
        Effect.promise(() =>
          fetch(node.url("/messages?channel=backlog&limit=1")).then((response) =>
            response.json() as Promise<{ messages: Array<unknown> }>
          )
        ),
        (page) => page.messages.length === 1
      )

      // Live buffers only: garbage not yet collected is no client's doing, and on a loaded
      // machine it alone went past the bound below (44 MB at the peak).
      const baseline = liveArrayBufferBytes()
      let peak = baseline
      const sampler = setInterval(() => {
        peak = Math.max(peak, liveArrayBufferBytes())
      }, 50)
      yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(sampler)))

      const port = Number(new URL(node.url("/")).port)
      const sockets = yield* Effect.forEach(Array.from({ length: 20 }), () =>
        Effect.async<Net.Socket>((resume) => {
          const socket = Net.connect(port, "127.0.0.1", () => {
            socket.write(
              `GET /events?channel=backlog HTTP/1.1\r\nHost: pollcast\r\nLast-Event-ID: ${beginning}\r\n\r\n`
            )
            // Never reads: what the server writes piles up in the kernel, then in the server.
            socket.pause()
            resume(Effect.succeed(socket))
          })
          socket.on("error", () => socket.destroy())
        }))
      yield* Effect.addFinalizer(() => Effect.sync(() => sockets.forEach((socket) => socket.destroy())))
      yield* eventually(eventStream.connections, (open) => open === 20, "10 seconds", "the streams to open")

      // The server lets go of every one of them by itself, and releases what they held.
      yield* eventually(eventStream.connections, (open) => open === 0, "30 seconds", "the streams to be cut off")
      // A paused socket notices nothing; reading again, each finds its connection closed.
      yield* Effect.forEach(sockets, (socket) =>
        Effect.async<void>((resume) => {
          if (socket.destroyed) return resume(Effect.void)
          socket.once("close", () => resume(Effect.void))
          socket.resume()
        }), { concurrency: "unbounded" })
      // Each may have had at most CLIENT_BUFFER_BYTES and a replay page queued (the page is
      // bounded at 64 KiB of bodies, under 0.5 MB framed); without the bounds each held ~39 MB.
      expect(megabytes(peak - baseline), "MB of buffers at the peak").toBeLessThan(20 * 1.5)
    }))
})
