/**
 * A node of several processes (WORKERS > 1): this primary and its workers (node:cluster
 * processes). The primary listens on the node's port and hands each connection to the worker with
 * the fewest open (see `front`).
 *
 * The primary owns what a node has once: the embedded PostgreSQL when used, the poller and its
 * wake-ups, retention, and the node's limits. The database sees one poller per node, whatever the
 * number of workers. Each batch is encoded once here and sent to every worker once; each worker
 * fans it out to its own clients, replays from the database for its resuming clients, and serves
 * every other route. Polling keeps pace with the slowest worker's fan-out, as it does with one
 * process's; a worker that falls 16 batches behind is stopped (its clients resume elsewhere).
 *
 * Supervision: a worker that exits is replaced, after a pause that grows while replacements keep
 * dying young; its clients reconnect to the others with Last-Event-ID and lose nothing. On
 * SIGTERM or Ctrl-C, every worker drains (SHUTDOWN_TIMEOUT, then SIGKILL), and only then the poller
 * and the embedded PostgreSQL stop. Workers whose primary vanishes (kill -9) stop by themselves
 * (see Worker.ts).
 */
import * as Cluster from "node:cluster"
import * as Net from "node:net"
import { Array as Arr, Context, Data, Deferred, Duration, Effect, Exit, FiberId, Layer, Option, PubSub, Redacted, Runtime, Schema, Stream } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Admission from "../Access/Admission.js"
import { AppConfig } from "../Config.js"
import { encodeBatch } from "../Delivery/Broadcast.js"
import * as Poller from "../Delivery/Poller.js"
import * as Wakeups from "../Delivery/Wakeups.js"
import type { Message, MessageId } from "../Domain/Message.js"
import * as Database from "../Storage/Database.js"
import * as MessageRepo from "../Storage/MessageRepo.js"
import * as Retention from "../Storage/Retention.js"
import * as Telemetry from "../Telemetry.js"
import * as Ipc from "./Ipc.js"
import { memoryNow, PollingStatus, pollingOf, type ProcessFigures } from "./NodeStatus.js"
import {
  handOff,
  nodeNameVariable,
  type PrimaryCalls,
  type PrimaryEvent,
  type WorkerCalls,
  type WorkerEvent,
  workerSlotVariable
} from "./Protocol.js"

const cluster = Cluster.default

/** A worker as the primary sees it. */
interface Member {
  /** Connections handed to it and still open. */
  connections: number
  /** Connections on their way to it: their sockets are the primary's until sent. */
  readonly handing: Set<Net.Socket>
  /** It takes connections (its HTTP server is up). */
  ready: boolean
  readonly slot: number
  readonly worker: Cluster.Worker
  readonly link: Ipc.Link<WorkerCalls, PrimaryEvent>
  /** Batches sent to it and not fanned out yet, oldest first. */
  readonly unacked: Array<{ readonly last: MessageId; readonly done: Deferred.Deferred<number> }>
  /** Its open event streams by client, given back to the node's counts if it dies. */
  readonly streams: Map<string, number>
  readonly exited: Deferred.Deferred<void>
  /** Done once it listens; failed if it exits before. */
  readonly listening: Deferred.Deferred<void, WorkerStartError>
  readonly startedAt: number
}

export class WorkerStartError extends Data.TaggedError("WorkerStartError")<{ readonly message: string }> {}

/** Batches a worker may leave unacknowledged before it is stopped as stuck. */
const maxUnacked = 16
/** How long a batch waits for the workers' fan-outs before the poller goes on. */
const fanOutWait = Duration.seconds(2)

/** The workers as the poller's Fanout: batches sent to every worker once, encoded once. */
class Workers {
  private readonly members = new Set<Member>()
  private readonly stuck: Array<Member> = []

  constructor(public position: MessageId, private readonly commits: PubSub.PubSub<void>) {}

  readonly publish = (messages: NonEmptyReadonlyArray<Message>) =>
    Effect.suspend(() => {
      const batch = encodeBatch(messages)
      const last = batch.ids[batch.ids.length - 1]!
      this.position = last
      const waits: Array<Effect.Effect<number>> = []
      for (const member of this.members) {
        if (member.unacked.length >= maxUnacked) {
          this.leave(member)
          this.stuck.push(member)
          continue
        }
        const done = Deferred.unsafeMake<number>(FiberId.none)
        member.unacked.push({ last, done })
        member.link.emit({ _tag: "Batch", batch })
        waits.push(Deferred.await(done))
      }
      // The slowest worker's fan-out paces the poller; a worker that dies meanwhile counts as 0.
      return Effect.all(waits, { concurrency: "unbounded" }).pipe(
        Effect.timeoutOption(fanOutWait),
        Effect.map(Option.match({ onNone: () => fanOutWait, onSome: (millis) => Duration.millis(Math.max(0, ...millis)) })),
        Effect.zipLeft(this.stopStuck)
      )
    })

  private readonly stopStuck = Effect.suspend(() =>
    Effect.forEach(this.stuck.splice(0), (member) =>
      Effect.logWarning(
        `Worker ${member.slot} (pid ${member.worker.process.pid}) fell ${maxUnacked} batches behind: stopping it; its clients resume on the others`
      ).pipe(Effect.zipRight(Effect.sync(() => member.worker.process.kill("SIGKILL")))), { discard: true })
  )

  get committed() {
    return Stream.fromPubSub(this.commits)
  }

  /** A worker's writes have committed: poll at once. */
  commit() {
    this.commits.unsafeOffer(undefined)
  }

  /** From now on, `member` gets every batch after the position returned. */
  join(member: Member): MessageId {
    this.members.add(member)
    return this.position
  }

  fannedOut(member: Member, last: MessageId, millis: number) {
    while (member.unacked.length > 0 && member.unacked[0]!.last <= last) {
      Deferred.unsafeDone(member.unacked.shift()!.done, Exit.succeed(millis))
    }
  }

  leave(member: Member) {
    this.members.delete(member)
    for (const { done } of member.unacked.splice(0)) Deferred.unsafeDone(done, Exit.succeed(0))
  }
}

class WorkersTag extends Context.Tag("pollcast/Cluster/Workers")<WorkersTag, Workers>() {}

/** The poller's Fanout over the workers, from `start`. */
const fanout = (start: MessageId) =>
  Layer.effect(
    Poller.Fanout,
    Effect.map(WorkersTag, (workers) => Poller.Fanout.of({ publish: workers.publish, committed: workers.committed }))
  ).pipe(
    Layer.provideMerge(Layer.scoped(
      WorkersTag,
      Effect.map(Effect.acquireRelease(PubSub.sliding<void>(1), PubSub.shutdown), (commits) => new Workers(start, commits))
    ))
  )

/**
 * The node's port, in the primary: each connection is handed to the worker with the fewest open
 * (and room for more), which serves it as its own (see Worker.ts).
 *
 * Not node:cluster's shared port. Its round-robin hands a connection to a worker and closes its own
 * copy only once the worker says it took it: one handed to a worker at the moment it dies is then
 * never answered nor closed, and an EventSource waiting on it never reconnects (seen in the
 * worker-kill test). Its other mode, every worker accepting from the socket itself, leaves the
 * kernel to choose: at 96,000 streams over 6 workers they held from 12,747 to 19,979, the last at
 * its open-file limit, refusing the rest. Here every connection on its way to a worker that dies
 * is closed (see `exited`), and the counts stay even (1,500 / 1,500 of 3,000 streams).
 */
const front = (members: () => Iterable<Member>) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const server = Net.createServer({ pauseOnConnect: true })
    server.on("connection", (socket) => {
      let chosen: Member | undefined
      for (const member of members()) {
        if (member.ready && (chosen === undefined || member.connections < chosen.connections)) chosen = member
      }
      if (chosen === undefined) {
        socket.destroy()
        return
      }
      const to = chosen
      to.connections++
      to.handing.add(socket)
      // Sent as a connection of no server (`server`, set by Node, is not in its types): Node would
      // otherwise have the worker track it for this server's connection count (a listener and its
      // state per connection, for as long as it lasts, in the worker), a count nothing here reads.
      ;(socket as Net.Socket & { server: Net.Server | null }).server = null
      // Once sent, the primary's copy is closed (the connection lives on in the worker's); one that
      // could not be sent is closed with it, and its client reconnects. (With keepOpen false,
      // Node would keep an unsendable connection open for ever.)
      to.worker.send(handOff, socket, { keepOpen: true }, (error) => {
        to.handing.delete(socket)
        socket.destroy()
        // Never the worker's: it will not say it closed.
        if (error) to.connections--
      })
    })
    // The server's errors come through listen; a connection's, with its socket.
    server.on("error", () => undefined)
    yield* Effect.acquireRelease(
      Effect.async<void, WorkerStartError>((resume) => {
        server.once("error", (error) => resume(Effect.fail(new WorkerStartError({ message: error.message }))))
        server.listen({ host: config.host, port: config.port, backlog: 4096 }, () => resume(Effect.void))
      }),
      // Stops accepting at once; the connections are the workers' (close would wait for them).
      () => Effect.sync(() => server.close())
    )
    const address = server.address()
    const where = typeof address === "object" && address !== null ? `${address.address}:${address.port}` : String(address)
    yield* Effect.logInfo(`Listening on http://${where}`)
  })

/** A replacement for a worker that lived less than this waits, longer each time (1 s doubling, up to 30 s). */
const youngDeath = Duration.seconds(10)
const maxRestartDelay = Duration.seconds(30)

/** Starts `count` workers, keeps them running, and answers their calls; stops them with its scope. */
const supervise = (count: number, nodeName: string, workerEnv: Record<string, string>) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const telemetry = yield* Telemetry.Telemetry
    const workers = yield* WorkersTag
    const polling = yield* pollingOf
    const counts = Admission.counts(config.limits)
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const members = new Map<number, Member>()
    const deaths = new Map<number, number>()
    let stopping = false
    // Until every first worker listens, a worker that exits fails the start rather than being replaced.
    let running = false

    // A terminal's Ctrl-C reaches the workers too, which exit: none is replaced from the first signal on.
    const onSignal = () => {
      stopping = true
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => ["SIGINT", "SIGTERM"].forEach((signal) => process.on(signal, onSignal))),
      () => Effect.sync(() => ["SIGINT", "SIGTERM"].forEach((signal) => process.off(signal, onSignal)))
    )

    const primaryFigures = Effect.sync((): ProcessFigures => ({
      name: "primary",
      pid: process.pid,
      clients: 0,
      subscribers: 0,
      selections: 0,
      position: workers.position,
      memory: memoryNow()
    }))

    /** What every worker answers in time; the others are left out. */
    const askEvery = <A>(ask: (member: Member) => Effect.Effect<A, Ipc.IpcError>) =>
      Effect.map(
        Effect.forEach([...members.values()], (member) => Effect.option(ask(member)), { concurrency: "unbounded" }),
        Arr.getSomes
      )

    const release = (member: Member, client: string) => {
      const open = member.streams.get(client)
      if (open === undefined) return
      counts.removeStream(client)
      if (open <= 1) member.streams.delete(client)
      else member.streams.set(client, open - 1)
    }

    const handlers = (member: () => Member): Ipc.Handlers<PrimaryCalls> => ({
      subscribe: () => Effect.sync(() => ({ position: workers.join(member()) })),
      publish: ({ publisher }) => Effect.sync(() => counts.publish(publisher, Date.now())),
      admitStream: ({ client }) =>
        Effect.sync(() => {
          const refusal = counts.addStream(client)
          if (refusal !== undefined) return refusal
          const streams = member().streams
          streams.set(client, (streams.get(client) ?? 0) + 1)
          return null
        }),
      admission: () => Effect.sync(counts.figures),
      polling: () => Effect.map(polling, Schema.encodeSync(PollingStatus)),
      processes: () =>
        Effect.zipWith(primaryFigures, askEvery((other) => other.link.call("figures", null)), (primary, others) => [
          primary,
          ...others
        ]),
      scrape: () =>
        Effect.zip(
          telemetry.collect,
          askEvery((other) =>
            Effect.map(other.link.call("metrics", null), (scopeMetrics) => ({ process: `worker ${other.slot}`, scopeMetrics }))
          )
        ).pipe(Effect.flatMap(([own, others]) => telemetry.render([{ process: "primary", scopeMetrics: own }, ...others])))
    })

    const onEvent = (member: () => Member) => (event: WorkerEvent) => {
      switch (event._tag) {
        case "FannedOut":
          return workers.fannedOut(member(), event.last, event.millis)
        case "Committed":
          return workers.commit()
        case "StreamClosed":
          return release(member(), event.client)
        case "Ready": {
          const ready = member()
          ready.ready = true
          return Deferred.unsafeDone(ready.listening, Exit.void)
        }
        case "ConnectionClosed":
          member().connections--
          return
      }
    }

    const start = (slot: number): Effect.Effect<void> =>
      Effect.gen(function*() {
        const worker = cluster.fork({ ...workerEnv, [workerSlotVariable]: String(slot), [nodeNameVariable]: nodeName })
        let self: Member | undefined
        const member = () => self!
        const link = yield* Ipc.link<WorkerCalls, PrimaryCalls, PrimaryEvent, WorkerEvent>(worker, handlers(member), onEvent(member))
        self = {
          connections: 0,
          handing: new Set(),
          ready: false,
          slot,
          worker,
          link,
          unacked: [],
          streams: new Map(),
          exited: Deferred.unsafeMake<void>(FiberId.none),
          listening: Deferred.unsafeMake<void, WorkerStartError>(FiberId.none),
          startedAt: Date.now()
        }
        members.set(slot, self)
        const started = self
        worker.once("exit", (code, signal) => runFork(exited(started, code, signal)))
      })

    const exited = (member: Member, code: number | null, signal: string | null) =>
      Effect.gen(function*() {
        // Node passes one socket at a time and queues the rest until the worker acknowledges the
        // last; a worker that dies leaves that queue behind, open: closed here, their clients
        // reconnect.
        for (const socket of member.handing) socket.destroy()
        member.handing.clear()
        member.link.close()
        workers.leave(member)
        for (const [client, open] of member.streams) {
          for (let i = 0; i < open; i++) counts.removeStream(client)
        }
        member.streams.clear()
        if (members.get(member.slot) === member) members.delete(member.slot)
        Deferred.unsafeDone(member.exited, Exit.void)
        Deferred.unsafeDone(
          member.listening,
          Exit.fail(new WorkerStartError({ message: `worker ${member.slot} exited before it listened (${signal ?? `code ${code}`}); its log says why` }))
        )
        if (stopping || !running) return
        const lived = Date.now() - member.startedAt
        const died = lived < Duration.toMillis(youngDeath) ? (deaths.get(member.slot) ?? 0) + 1 : 0
        deaths.set(member.slot, died)
        const delay = died === 0
          ? Duration.zero
          : Duration.min(Duration.times(Duration.seconds(1), 2 ** (died - 1)), maxRestartDelay)
        yield* Effect.logWarning(
          `Worker ${member.slot} (pid ${member.worker.process.pid}) exited (${signal ?? `code ${code}`}); ` +
            `starting another${Duration.toMillis(delay) > 0 ? ` in ${Duration.format(delay)}` : ""}. Its clients resume on the others`
        )
        yield* Effect.sleep(delay)
        if (!stopping) yield* start(member.slot)
      })

    cluster.setupPrimary({ serialization: "advanced" })
    for (let slot = 1; slot <= count; slot++) yield* start(slot)
    const first = [...members.values()]

    // Runs first at shutdown: the workers drain their clients and requests, then the poller and
    // the database stop.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        stopping = true
        const alive = [...members.values()]
        yield* Effect.logInfo(`Stopping ${alive.length} worker(s)`)
        for (const member of alive) member.worker.process.kill("SIGTERM")
        const allExited = Effect.forEach(alive, (member) => Deferred.await(member.exited), { discard: true })
        const stopped = yield* allExited.pipe(
          Effect.interruptible,
          Effect.timeoutTo({ duration: Duration.sum(config.shutdownTimeout, Duration.seconds(5)), onSuccess: () => true, onTimeout: () => false })
        )
        if (stopped) return
        yield* Effect.logWarning("Some workers had not stopped in time; killing them")
        for (const member of alive) member.worker.process.kill("SIGKILL")
        yield* allExited.pipe(Effect.interruptible, Effect.timeoutOption("2 seconds"))
      })
    )

    // Started once every first worker listens; a start that fails in one (a port in use, a
    // database refusing it) fails the node's, as it would a single process's.
    yield* Effect.forEach(first, (member) => Deferred.await(member.listening), { discard: true })
    running = true
    // Opened last, so closed first: no connection is handed to a worker that is stopping.
    yield* front(() => members.values())
  })

/**
 * The primary of a node of `count` workers: the database (migrated, or started embedded), the
 * poller feeding the workers, wake-ups, retention and the supervisor.
 */
export const layer = (count: number) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const url = yield* Database.DatabaseUrl
      const nodeName = MessageRepo.newAnnouncer()
      const workerEnv = { DATABASE_URL: Redacted.value(url) }
      const polling = Layer.mergeAll(Poller.layerFeeding(fanout), Retention.layer).pipe(
        Layer.provideMerge(Wakeups.layer.pipe(Layer.provideMerge(MessageRepo.layerAs(nodeName))))
      )
      return Layer.scopedDiscard(supervise(count, nodeName, workerEnv)).pipe(
        Layer.provide(polling),
        Layer.provideMerge(Telemetry.layer)
      )
    })
  )
