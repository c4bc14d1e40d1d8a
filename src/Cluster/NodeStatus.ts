/**
 * What a node knows of itself, whatever its number of processes, for `/healthz`, `/readyz`,
 * `/stats` and `/metrics`: the poller's and the wake-up's state (one per node), every process's
 * figures, and one scrape of every metric. In a single process it is read in place (`local`); in a
 * worker, asked of the node's primary, which asks every worker (see Cluster/Worker and Primary).
 *
 * The figures cross processes as Schema-encoded values.
 */
import { Context, Effect, Layer, Option, Schema } from "effect"
import { Broadcast } from "../Delivery/Broadcast.js"
import { EventStream } from "../Delivery/EventStream.js"
import { Poller } from "../Delivery/Poller.js"
import { Wakeups } from "../Delivery/Wakeups.js"
import { MessageRepo } from "../Storage/MessageRepo.js"
import { Telemetry } from "../Telemetry.js"

export const PollingStatus = Schema.Struct({
  poller: Schema.Struct({
    lastSuccessAt: Schema.Number,
    consecutiveFailures: Schema.Number,
    polls: Schema.Number,
    probes: Schema.Number,
    position: Schema.String,
    restartNeeded: Schema.Option(Schema.String)
  }),
  wakeup: Schema.Struct({
    state: Schema.Literal("disabled", "connecting", "listening", "reconnecting"),
    notifications: Schema.Number,
    outages: Schema.Number
  })
})
export type PollingStatus = typeof PollingStatus.Type

/** One process of the node: its event streams, and its writes' state. */
export const ProcessFigures = Schema.Struct({
  /** `node` for a node of one process; else `primary`, `worker 1`, `worker 2`… */
  name: Schema.String,
  pid: Schema.Number,
  clients: Schema.Number,
  subscribers: Schema.Number,
  selections: Schema.Number,
  /** What it has fanned out through. */
  position: Schema.String,
  /** When its latest write failed, if its latest write did fail (epoch milliseconds). */
  writeFailedAt: Schema.optional(Schema.Number),
  /** Its memory in bytes: resident, the JavaScript heap in use, and what lies outside it (buffers). */
  memory: Schema.Struct({ rss: Schema.Number, heapUsed: Schema.Number, external: Schema.Number })
})
export type ProcessFigures = typeof ProcessFigures.Type

export class NodeStatus extends Context.Tag("pollcast/NodeStatus")<NodeStatus, {
  readonly polling: Effect.Effect<PollingStatus>
  /** Every process's figures, those of processes that answered in time. */
  readonly processes: Effect.Effect<ReadonlyArray<ProcessFigures>>
  /** Every metric of every process, in Prometheus' text format. */
  readonly scrape: Effect.Effect<string>
}>() {}

/** This process's memory, as ProcessFigures gives it. */
export const memoryNow = () => {
  const { external, heapUsed, rss } = process.memoryUsage()
  return { rss, heapUsed, external }
}

/** This process's figures, as `name`. */
export const figuresOf = (name: string) =>
  Effect.gen(function*() {
    const broadcast = yield* Broadcast
    const eventStream = yield* EventStream
    const repo = yield* MessageRepo
    return Effect.gen(function*() {
      const failing = yield* repo.failingWrite
      return {
        name,
        pid: process.pid,
        clients: yield* eventStream.connections,
        subscribers: yield* broadcast.subscribers,
        selections: yield* eventStream.selections,
        position: yield* broadcast.position,
        memory: memoryNow(),
        ...(Option.isSome(failing) ? { writeFailedAt: failing.value.at } : {})
      } satisfies ProcessFigures
    })
  })

/** The poller's and the wake-up's state, in the process that runs them. */
export const pollingOf = Effect.gen(function*() {
  const poller = yield* Poller
  const wakeups = yield* Wakeups
  return Effect.all({ poller: poller.status, wakeup: wakeups.status })
})

/** A node of one process: everything is read in place. */
export const local = Layer.effect(
  NodeStatus,
  Effect.gen(function*() {
    const figures = yield* figuresOf("node")
    const telemetry = yield* Telemetry
    return NodeStatus.of({
      polling: yield* pollingOf,
      processes: Effect.map(figures, (one) => [one]),
      scrape: telemetry.scrape
    })
  })
)
