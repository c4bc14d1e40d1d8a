/**
 * The delivery guarantees, against a real PostgreSQL, through real HTTP and a real SSE client.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as Net from "node:net"
import * as GapFree from "../support/GapFree.js"
import * as SseClient from "../support/SseClient.js"
import * as TestClient from "../support/TestClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

const post = TestClient.publish

const stats = (node: TestNode.TestNode) =>
  Effect.promise(async () => (await (await fetch(node.url("/stats"))).json()) as { clients: number; subscribers: number })

/** Waits a little longer once a condition holds, so that a duplicate arriving late is seen too. */
const settle = Effect.sleep("250 millis")

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("delivery", (it) => {
  it.scoped("delivers a row committed after later ones to every subscriber, exactly once, in one order", () =>
    GapFree.heldBack(TestNode.start()))

  it.scoped("gives every client of a node the same messages in the same order under concurrent writers", () =>
    GapFree.concurrentWriters(TestNode.start()))

  it.scoped("resumes from Last-Event-ID on any node with exactly what was missed, in order, once", () =>
    Effect.gen(function*() {
      const nodeA = yield* TestNode.start()
      const nodeB = yield* TestNode.start()
      const channel = "resume"
      const clientScope = yield* Scope.make()
      const client = yield* SseClient.connected(nodeA.url(`/events?channel=${channel}`)).pipe(Scope.extend(clientScope))
      for (const body of ["m1", "m2", "m3"]) yield* post(nodeA, { channel, body })
      yield* client.waitUntil(() => client.messages.length === 3)
      const lastSeen = client.messages[2]!.id
      yield* Scope.close(clientScope, Exit.void)

      for (const body of ["m4", "m5", "m6"]) yield* post(nodeA, { channel, body })
      const onB = yield* SseClient.connected(nodeB.url(`/events?channel=${channel}`), { lastEventId: lastSeen })
      const onA = yield* SseClient.connected(nodeA.url(`/events?channel=${channel}&lastEventId=${lastSeen}`))
      yield* post(nodeB, { channel, body: "m7" })
      for (const resumed of [onB, onA]) {
        yield* resumed.waitUntil(() => resumed.messages.length >= 4)
      }
      yield* settle
      expect(onB.bodies()).toEqual(["m4", "m5", "m6", "m7"])
      expect(onA.messages.map((m) => m.id)).toEqual(onB.messages.map((m) => m.id))
    }))

  it.scoped("lets a client ride out a restart of its node and receive what was posted meanwhile", () =>
    Effect.gen(function*() {
      const channel = "restart"
      const firstRun = yield* Scope.make()
      const node = yield* TestNode.start({ SSE_RETRY: "100 millis" }).pipe(Scope.extend(firstRun))
      const port = new URL(node.url("/")).port
      const other = yield* TestNode.start()
      const client = yield* SseClient.connected(node.url(`/events?channel=${channel}`))
      yield* post(node, { channel, body: "before" })
      yield* client.waitUntil(() => client.messages.length === 1)

      yield* Scope.close(firstRun, Exit.void)
      for (const body of ["while down 1", "while down 2"]) yield* post(other, { channel, body })
      const restarted = yield* TestNode.start({ PORT: port, SSE_RETRY: "100 millis" })
      yield* post(restarted, { channel, body: "after" })
      yield* client.waitUntil(() => client.messages.length >= 4)
      yield* settle
      expect(client.bodies()).toEqual(["before", "while down 1", "while down 2", "after"])
      expect(client.opens()).toBeGreaterThanOrEqual(2)
    }))

  it.scoped("releases a client as soon as it disconnects", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start()
      const scope = yield* Scope.make()
      yield* Effect.all(Array.from({ length: 10 }, (_, i) =>
        SseClient.connected(node.url(i % 2 === 0 ? "/events" : `/events?channel=release&lastEventId=${"0".repeat(16)}-${"0".repeat(16)}`))
      )).pipe(Scope.extend(scope))
      // Open at once; subscribed once their (empty) replay is done.
      yield* SseClient.eventually(stats(node), (current) => current.subscribers === 10, "5 seconds", "all subscribed")
      expect(yield* stats(node)).toMatchObject({ clients: 10, subscribers: 10 })
      yield* Scope.close(scope, Exit.void)
      const after = yield* SseClient.eventually(
        stats(node),
        (current) => current.clients === 0 && current.subscribers === 0,
        "5 seconds",
        "clients to be released"
      )
      expect(after).toMatchObject({ clients: 0, subscribers: 0 })
    }))

  it.scoped("cuts off a client that stops reading, without holding back the others, and it resumes without loss", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // Room for a healthy client (here, in the busy test process) to fall ten batches of 100 × 8 KiB
      // behind; none for one that stops reading the 24 MiB that follow.
      const node = yield* TestNode.start({ CLIENT_BUFFER_BYTES: String(8 * 1024 * 1024), POLL_BATCH_SIZE: "100" })
      const channel = "slow-reader"
      const start = (yield* post(node, { channel, body: "start" })).id
      const healthy = yield* SseClient.connected(node.url(`/events?channel=${channel}&lastEventId=${start}`))

      // A client that sends its request and then never reads a byte.
      yield* Effect.acquireRelease(
        Effect.async<Net.Socket>((resume) => {
          const { port } = new URL(node.url("/"))
          const socket = Net.connect(Number(port), "127.0.0.1", () => {
            socket.write(`GET /events?channel=${channel}&lastEventId=${start} HTTP/1.1\r\nHost: localhost\r\n\r\n`)
            socket.pause()
            resume(Effect.succeed(socket))
          })
        }),
        (socket) => Effect.sync(() => socket.destroy())
      )
      yield* SseClient.eventually(stats(node), (current) => current.clients === 2, "5 seconds", "both clients")

      // 3,000 messages of 8 KiB, far more than socket buffers hold, written as steady traffic (a
      // batch every 50 ms) rather than one burst that only a client on an idle machine could absorb.
      const count = 3000
      const perInsert = 100
      yield* Effect.forEach(Array.from({ length: count / perInsert }, (_, i) => i * perInsert), (offset) =>
        sql`
          INSERT INTO messages (channel, author, body)
          SELECT ${channel}, 'bulk', n || ':' || repeat('x', 8192)
          FROM generate_series(${offset + 1}::int, ${offset + perInsert}::int) AS n`.pipe(
          Effect.zipRight(Effect.sleep("50 millis"))
        ), { discard: true })
      yield* healthy.waitUntil(() => healthy.messages.length >= count, "60 seconds")
      expect(healthy.messages.map((m) => Number(m.body.split(":")[0]))).toEqual(
        Array.from({ length: count }, (_, i) => i + 1)
      )
      // The stalled client is gone; the healthy one is still connected.
      yield* SseClient.eventually(stats(node), (current) => current.clients === 1, "10 seconds", "the stalled client to be cut off")
      expect(healthy.source.readyState).toBe(healthy.source.OPEN)
      expect(healthy.opens()).toBe(1)

      // Reconnecting from where it was, it gets everything.
      const resumed = yield* SseClient.connected(node.url(`/events?channel=${channel}`), { lastEventId: start })
      yield* resumed.waitUntil(() => resumed.messages.length >= count, "60 seconds")
      expect(resumed.messages.map((m) => m.id)).toEqual(healthy.messages.map((m) => m.id))
    }))
})
