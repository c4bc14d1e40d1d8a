/**
 * A node of several processes (WORKERS=2): workers sharing the node's port, each batch reaching the
 * clients of every worker, a killed worker's clients resuming on the other with nothing lost or
 * repeated, the limits and the figures of the node as a whole, and a shutdown that leaves nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schedule, Schema } from "effect"
import * as Fs from "node:fs"
import * as NodeHttp from "node:http"
import * as Path from "node:path"
import * as ServiceProcess from "../../scripts/support/ServiceProcess.js"
import { freePort } from "../support/freePort.js"
import { request } from "../support/Http.js"
import { scrape } from "../support/Scrape.js"
import * as SseClient from "../support/SseClient.js"
import { eventually } from "../support/SseClient.js"

const dataDir = ServiceProcess.temporaryFolder("pollcast-cluster-")

const Stats = Schema.Struct({
  clients: Schema.Number,
  limits: Schema.Struct({ streams: Schema.Number }),
  processes: Schema.Array(Schema.Struct({ name: Schema.String, pid: Schema.Number, clients: Schema.Number }))
})

/** A node of two workers on its own embedded PostgreSQL, once both workers listen. */
const startNode = (settings: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const port = String(yield* Effect.promise(freePort))
    const pgPort = String(yield* Effect.promise(freePort))
    const node = yield* ServiceProcess.spawn({
      DATA_DIR: yield* dataDir,
      HOST: "127.0.0.1",
      PORT: port,
      EMBEDDED_POSTGRES_PORT: pgPort,
      WORKERS: "2",
      POLL_INTERVAL: "100 millis",
      PUBLISH_RATE: "0",
      SSE_RETRY: "200 millis",
      ...settings
    })
    // The primary listens once both workers take connections.
    yield* eventually(Effect.sync(node.output), (output) => output.includes("Listening on"), "90 seconds", "the node to listen")
    const url = (path: string) => `http://127.0.0.1:${port}${path}`
    const stats = Effect.map(request(url("/stats")), (reply) => Schema.decodeUnknownSync(Stats)(reply.json))
    const workers = Effect.map(stats, (figures) => figures.processes.filter((process) => process.name.startsWith("worker ")))
    return { node, url, stats, workers }
  })

type Node = Effect.Effect.Success<ReturnType<typeof startNode>>

/**
 * Event stream clients, until every worker holds some (at least `least` of them): each worker
 * accepts from the shared socket, so where one connection goes is the kernel's choice.
 */
const spreadClients = (node: Node, least: number) =>
  Effect.gen(function*() {
    const clients: Array<SseClient.SseClient> = []
    while (true) {
      clients.push(yield* SseClient.connected(node.url("/events?channel=cluster")))
      const workers = yield* eventually(node.workers, (found) => found.reduce((total, worker) => total + worker.clients, 0) === clients.length)
      if (clients.length >= least && workers.length === 2 && workers.every((worker) => worker.clients > 0)) return { clients, workers }
      if (clients.length > 40) return yield* Effect.dieMessage(`40 clients, and still not on both workers: ${JSON.stringify(workers)}`)
    }
  })

const publish = (url: string, body: string, headers: Record<string, string> = {}) =>
  Effect.tryPromise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ channel: "cluster", body })
    })
    return { status: response.status, json: await response.json() as unknown }
  })

/** GET /events from `localAddress` (each address its own client): the status, and the open stream to close. */
const openStream = (url: string, localAddress: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly status: number; readonly request: NodeHttp.ClientRequest }>((resume) => {
      const sent = NodeHttp.get(url, { localAddress, agent: false }, (response) => {
        response.resume()
        resume(Effect.succeed({ status: response.statusCode ?? 0, request: sent }))
      })
      sent.on("error", () => undefined)
    }),
    ({ request }) => Effect.sync(() => request.destroy())
  )

const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("a node of several processes", { timeout: 180_000 }, () => {
  it.live("two workers share the port, and a batch reaches the clients of both", () =>
    Effect.gen(function*() {
      const node = yield* startNode()
      const url = node.url
      const { clients } = yield* spreadClients(node, 6)
      for (const body of ["one", "two", "three"]) expect((yield* publish(url("/messages"), body)).status).toBe(201)
      for (const client of clients) {
        yield* client.waitUntil(() => client.messages.length >= 3)
        expect(client.bodies()).toEqual(["one", "two", "three"])
      }
    }).pipe(Effect.scoped))

  it.live("a worker killed with SIGKILL is replaced, and its clients resume on the other: none lost, none repeated", () =>
    Effect.gen(function*() {
      const node = yield* startNode()
      const { url, workers } = node
      const { clients, workers: [victim] } = yield* spreadClients(node, 6)
      const bodies = Array.from({ length: 60 }, (_, i) => `message ${i}`)
      for (const [i, body] of bodies.entries()) {
        if (i === 20) process.kill(victim!.pid, "SIGKILL")
        // A connection handed to the worker as it died is closed: the publisher tries again.
        const stored = yield* publish(url("/messages"), body, { connection: "close" }).pipe(
          Effect.retry({ times: 3, schedule: Schedule.spaced("100 millis") })
        )
        expect(stored.status).toBe(201)
        yield* Effect.sleep("20 millis")
      }
      for (const client of clients) {
        yield* client.waitUntil(() => client.messages.length >= bodies.length, "30 seconds")
        expect(client.bodies()).toEqual(bodies)
      }
      // Its clients did reconnect.
      expect(clients.some((client) => client.opens() > 1)).toBe(true)
      // Replaced: two workers again, the killed one gone.
      const replaced = yield* eventually(workers, (found) => found.length === 2, "30 seconds", "a new worker")
      expect(replaced.map((worker) => worker.pid)).not.toContain(victim!.pid)
    }).pipe(Effect.scoped))

  it.live("MAX_STREAMS, MAX_STREAMS_PER_CLIENT and PUBLISH_RATE hold for the node, whichever worker a request reaches", () =>
    Effect.gen(function*() {
      const { stats, url, workers } = yield* startNode({
        MAX_STREAMS: "8",
        MAX_STREAMS_PER_CLIENT: "4",
        PUBLISH_RATE: "0.01",
        PUBLISH_BURST: "2"
      })
      const events = url("/events?channel=cluster")
      // Each stream on a connection of its own, which either worker may take: a count per worker
      // would let a fifth in wherever fewer than four went.
      for (let i = 0; i < 4; i++) expect((yield* openStream(events, "127.0.0.1")).status).toBe(200)
      yield* eventually(workers, (found) => found.reduce((total, worker) => total + worker.clients, 0) === 4)
      for (let i = 0; i < 3; i++) expect((yield* openStream(events, "127.0.0.1")).status).toBe(429)
      for (let i = 0; i < 4; i++) expect((yield* openStream(events, "127.0.0.2")).status).toBe(200)
      for (let i = 0; i < 3; i++) expect((yield* openStream(events, "127.0.0.3")).status).toBe(503)
      expect((yield* stats).limits.streams).toBe(8)
      // Two publishes at once, then one every 100 s, on connections reaching both workers.
      const statuses = []
      for (const body of ["a", "b", "c", "d"]) statuses.push((yield* publish(url("/messages"), body, { connection: "close" })).status)
      expect(statuses).toEqual([201, 201, 429, 429])
    }).pipe(Effect.scoped))

  it.live("one /metrics scrape covers every process of the node", () =>
    Effect.gen(function*() {
      const node = yield* startNode()
      const { clients, workers } = yield* spreadClients(node, 2)
      const metrics = yield* scrape(node.url("/metrics"))
      for (const worker of workers) expect(metrics.value("pollcast_event_streams_open", { process: worker.name })).toBe(worker.clients)
      expect(metrics.value("pollcast_event_streams_open")).toBe(clients.length)
      // One poller, the primary's.
      expect(metrics.value("pollcast_polls_total", { process: "primary" })).toBeGreaterThan(0)
      expect(metrics.value("pollcast_polls_total", { process: "worker 1" }) + metrics.value("pollcast_polls_total", { process: "worker 2" })).toBe(0)
    }).pipe(Effect.scoped))

  it.live("SIGTERM stops every worker, then the poller and the embedded PostgreSQL: no process is left", () =>
    Effect.gen(function*() {
      const { node, url, workers } = yield* startNode()
      const client = yield* SseClient.connected(url("/events?channel=cluster"))
      const pids = (yield* eventually(workers, (found) => found.length === 2)).map((worker) => worker.pid)
      const postgres = Fs.readFileSync(Path.join(node.output().match(/dataDir=(\S+)/)?.[1] ?? "", "postmaster.pid"), "utf8").split("\n")[0]
      node.child.kill("SIGTERM")
      expect((yield* node.exited).code).toBe(0)
      expect(client.source.readyState).not.toBe(1)
      for (const pid of [...pids, Number(postgres)]) expect(isRunning(pid), `pid ${pid}`).toBe(false)
      expect(node.output()).toContain("Embedded PostgreSQL stopped")
    }).pipe(Effect.scoped))

  it.live("kill -9 of the primary: its workers notice and stop by themselves", () =>
    Effect.gen(function*() {
      const { node, workers } = yield* startNode()
      const pids = (yield* eventually(workers, (found) => found.length === 2)).map((worker) => worker.pid)
      node.child.kill("SIGKILL")
      yield* node.exited
      yield* eventually(Effect.sync(() => pids.filter(isRunning)), (running) => running.length === 0, "20 seconds", "the workers to stop")
    }).pipe(Effect.scoped))
})
