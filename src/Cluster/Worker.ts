/**
 * A worker process of a node (see Primary.ts): it serves every route on the connections its
 * primary hands it, holds its own clients' event streams, replays from the database for those that
 * resume, and writes with a pool of its own. What a node has once is its primary's: batches come from its
 * poller, already encoded; the limits are its counts; /stats, /readyz and /metrics are gathered by
 * it from every process.
 *
 * A worker whose primary is gone (killed with -9, say) notices its channel closing and stops as
 * on SIGTERM, draining its clients, who reconnect once a node is back.
 */
import { HttpServer } from "@effect/platform"
import * as NodeHttp from "node:http"
import * as Net from "node:net"
import { Config, Context, Duration, Effect, Layer, Queue, Schema, Scope, Stream } from "effect"
import * as Admission from "../Access/Admission.js"
import * as RequestPolicy from "../Access/RequestPolicy.js"
import { AppConfig } from "../Config.js"
import { Batch, Broadcast, type EncodedBatch } from "../Delivery/Broadcast.js"
import * as BroadcastModule from "../Delivery/Broadcast.js"
import * as EventStream from "../Delivery/EventStream.js"
import { ServiceUnavailable } from "../Domain/Errors.js"
import { beginning } from "../Domain/Message.js"
import * as Http from "../Http.js"
import { MessageRepo } from "../Storage/MessageRepo.js"
import * as MessageRepoModule from "../Storage/MessageRepo.js"
import * as Telemetry from "../Telemetry.js"
import * as Ipc from "./Ipc.js"
import { figuresOf, memoryNow, NodeStatus, PollingStatus } from "./NodeStatus.js"
import * as Protocol from "./Protocol.js"

/** Which worker this is, and the node's name (its announcements'), as the primary started it. */
export const identity = Config.all({
  slot: Config.integer(Protocol.workerSlotVariable),
  nodeName: Config.string(Protocol.nodeNameVariable)
})

class PrimaryLink extends Context.Tag("pollcast/Cluster/PrimaryLink")<PrimaryLink, {
  readonly link: Ipc.Link<Protocol.PrimaryCalls, Protocol.WorkerEvent>
  /** Batches from the primary, in order (at most 16 are unacknowledged: see Primary.ts). */
  readonly batches: Queue.Dequeue<EncodedBatch>
  /** Answers the primary's calls from now on (before, it is told nothing is here yet). */
  readonly answer: (handlers: Ipc.Handlers<Protocol.WorkerCalls>) => void
}>() {}

const processPort: Ipc.Port = {
  send: (message) => process.send?.(message),
  on: (event, listener) => process.on(event, listener),
  off: (event, listener) => process.off(event, listener)
}

const linkLayer = (slot: number) =>
  Layer.scoped(
    PrimaryLink,
    Effect.gen(function*() {
      const batches = yield* Effect.acquireRelease(Queue.unbounded<EncodedBatch>(), Queue.shutdown)
      let answering: Ipc.Handlers<Protocol.WorkerCalls> | undefined
      const handlers: Ipc.Handlers<Protocol.WorkerCalls> = {
        figures: (request) =>
          answering?.figures(request) ??
            Effect.succeed({
              name: `worker ${slot}`,
              pid: process.pid,
              clients: 0,
              subscribers: 0,
              selections: 0,
              position: beginning,
              memory: memoryNow()
            }),
        metrics: (request) => answering?.metrics(request) ?? Effect.succeed([])
      }
      const link = yield* Effect.acquireRelease(
        Ipc.link<Protocol.PrimaryCalls, Protocol.WorkerCalls, Protocol.WorkerEvent, Protocol.PrimaryEvent>(processPort, handlers, (event) => {
          if (event._tag === "Batch") batches.unsafeOffer(event.batch)
        }),
        (link) => Effect.sync(link.close)
      )
      // The primary is gone: stop as on SIGTERM (Runtime.ts), draining the clients.
      const orphaned = () => process.kill(process.pid, "SIGTERM")
      yield* Effect.acquireRelease(
        Effect.sync(() => process.once("disconnect", orphaned)),
        () => Effect.sync(() => process.off("disconnect", orphaned))
      )
      return { link, batches, answer: (given) => (answering = given) }
    })
  )

/** The worker's Broadcast, from where the primary's poller is, fed by its batches. */
const broadcastLayer = Layer.unwrapEffect(
  Effect.gen(function*() {
    const { link } = yield* PrimaryLink
    const { position } = yield* Effect.orDie(link.call("subscribe", null))
    return BroadcastModule.layer(position)
  })
)

/** Fans out each batch from the primary and says so; tells it of this worker's commits; answers its calls. */
const feedLayer = (slot: number) =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const { answer, batches, link } = yield* PrimaryLink
      const broadcast = yield* Broadcast
      const repo = yield* MessageRepo
      const telemetry = yield* Telemetry.Telemetry
      yield* Queue.take(batches).pipe(
        Effect.flatMap((batch) => {
          const decoded = Batch.decode(batch)
          return Effect.map(
            Effect.timed(broadcast.publishBatch(decoded)),
            ([elapsed]) => link.emit({ _tag: "FannedOut", last: decoded.last, millis: Duration.toMillis(elapsed) })
          )
        }),
        Effect.forever,
        Effect.forkScoped
      )
      yield* Effect.forkScoped(Stream.runForEach(repo.committed, () => Effect.sync(() => link.emit({ _tag: "Committed" }))))
      const figures = yield* figuresOf(`worker ${slot}`)
      answer({ figures: () => figures, metrics: () => telemetry.collect })
    })
  )

/**
 * A stream's finalizer: tells the primary the stream closed. Made apart from the admission, so
 * that it keeps alive only the link and the client's key (as EventStream's `closing`).
 */
const streamClosed = (link: Ipc.Link<Protocol.PrimaryCalls, Protocol.WorkerEvent>, client: string) => () =>
  Effect.sync(() => link.emit({ _tag: "StreamClosed", client }))

/** The node's limits, kept by the primary. */
const admissionLayer = Layer.effect(
  Admission.Admission,
  Effect.gen(function*() {
    const { link } = yield* PrimaryLink
    const { limits } = yield* AppConfig
    const unreachable = () =>
      new ServiceUnavailable({ retryAfter: 1, message: "This node is restarting a process; try again shortly" })
    return Admission.Admission.of({
      publish: (subject, address) =>
        limits.publishRate === 0 ? Effect.void : link.call("publish", { publisher: Admission.publisherKey(subject, address) }).pipe(
          Effect.mapError(unreachable),
          Effect.flatMap((wait) => wait > 0 ? Effect.fail(Admission.publishRefused(limits, wait)) : Effect.void)
        ),
      stream: (address) =>
        Effect.gen(function*() {
          const client = Admission.limitKey(address)
          const refusal = yield* Effect.mapError(link.call("admitStream", { client }), unreachable)
          if (refusal !== null) return yield* Admission.streamRefused(limits, refusal)
          // Its effect made when it runs, not kept for the stream's life (as in Admission.local).
          yield* Effect.scopeWith((scope) => Scope.addFinalizerExit(scope, streamClosed(link, client)))
        }),
      figures: Effect.orDie(link.call("admission", null))
    })
  })
)

/** What the node knows of itself, asked of the primary. */
const nodeStatusLayer = Layer.effect(
  NodeStatus,
  Effect.gen(function*() {
    const { link } = yield* PrimaryLink
    return NodeStatus.of({
      polling: link.call("polling", null).pipe(Effect.flatMap(Schema.decode(PollingStatus)), Effect.orDie),
      processes: Effect.orElseSucceed(link.call("processes", null), () => []),
      scrape: Effect.orDie(link.call("scrape", null))
    })
  })
)

/**
 * Takes the connections the primary hands over as the server's own, and tells it when each
 * closes (it hands the next to the worker with the fewest).
 */
const receive = (link: Ipc.Link<Protocol.PrimaryCalls, Protocol.WorkerEvent>) => (server: NodeHttp.Server) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      // One listener for every connection ("close" comes once): none made per connection.
      const closed = () => link.emit({ _tag: "ConnectionClosed" })
      const onMessage = (message: unknown, socket: unknown) => {
        if (!Protocol.isHandOff(message) || !(socket instanceof Net.Socket)) return
        socket.on("close", closed)
        server.emit("connection", socket)
        socket.resume()
      }
      process.on("message", onMessage)
      return onMessage
    }),
    (onMessage) => Effect.sync(() => process.off("message", onMessage))
  )

/** Tells the primary that the worker takes connections, once its server is up. */
const readyLayer = Layer.scopedDiscard(
  Effect.gen(function*() {
    yield* HttpServer.HttpServer
    const { link } = yield* PrimaryLink
    link.emit({ _tag: "Ready" })
  })
)

const httpLayer = Layer.unwrapEffect(
  Effect.map(PrimaryLink, ({ link }) => Http.layerWith({ _tag: "Handed", receive: receive(link) }))
)

/** A worker of the node, on a database its primary has migrated. */
export const layer = Layer.unwrapEffect(
  Effect.map(identity, ({ nodeName, slot }) =>
    readyLayer.pipe(
      Layer.provideMerge(httpLayer),
      Layer.provide(RequestPolicy.layer),
      Layer.provide(Layer.merge(admissionLayer, nodeStatusLayer)),
      Layer.provideMerge(feedLayer(slot)),
      Layer.provideMerge(EventStream.layer),
      Layer.provideMerge(broadcastLayer),
      Layer.provideMerge(MessageRepoModule.layerAs(nodeName)),
      Layer.provideMerge(linkLayer(slot)),
      Layer.provideMerge(Telemetry.layer),
      Layer.annotateLogs("worker", slot)
    )
  )
)
