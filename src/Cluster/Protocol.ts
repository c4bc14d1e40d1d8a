/**
 * What a node's primary and its workers say to each other (over Ipc.ts).
 *
 * The primary polls and sends each batch to every worker once, encoded; a worker fans it out to
 * its own clients and says when it has (so that polling keeps pace with the slowest), and tells the
 * primary when its writes have committed (so that it polls at once). The node's limits are kept by
 * the primary, which the workers ask; its figures are gathered by the primary from every worker.
 */
import type { ScopeMetrics } from "@opentelemetry/sdk-metrics"
import type { AdmissionFigures } from "../Access/Admission.js"
import type { StreamRefusal } from "../Access/Limits.js"
import type { EncodedBatch } from "../Delivery/Broadcast.js"
import type { MessageId } from "../Domain/Message.js"
import type { PollingStatus, ProcessFigures } from "./NodeStatus.js"

/** Calls a worker makes of its primary. */
export type PrimaryCalls = {
  /** From now on, every batch after `position` comes to this worker. */
  readonly subscribe: { readonly request: null; readonly response: { readonly position: MessageId } }
  /** Takes a publish from `publisher`'s bucket: 0, or the milliseconds to wait. */
  readonly publish: { readonly request: { readonly publisher: string }; readonly response: number }
  /** Counts an event stream of `client`, or says which cap it would pass. */
  readonly admitStream: { readonly request: { readonly client: string }; readonly response: StreamRefusal | null }
  readonly admission: { readonly request: null; readonly response: AdmissionFigures }
  readonly polling: { readonly request: null; readonly response: typeof PollingStatus.Encoded }
  readonly processes: { readonly request: null; readonly response: ReadonlyArray<ProcessFigures> }
  readonly scrape: { readonly request: null; readonly response: string }
}

/** Calls the primary makes of a worker. */
export type WorkerCalls = {
  readonly figures: { readonly request: null; readonly response: ProcessFigures }
  readonly metrics: { readonly request: null; readonly response: Array<ScopeMetrics> }
}

/** What a worker tells its primary. */
export type WorkerEvent =
  /** Through `last`, in `millis` of its fan-out (which paces the poller, as a process's own does). */
  | { readonly _tag: "FannedOut"; readonly last: MessageId; readonly millis: number }
  | { readonly _tag: "Committed" }
  | { readonly _tag: "StreamClosed"; readonly client: string }
  /** Its HTTP server is up: it takes connections. */
  | { readonly _tag: "Ready" }
  /** A connection handed to it has closed. */
  | { readonly _tag: "ConnectionClosed" }

/** What the primary tells a worker. */
export type PrimaryEvent = { readonly _tag: "Batch"; readonly batch: EncodedBatch }

/** The message a connection's socket is handed to a worker with (beside the Ipc channel's). */
export const handOff = { pollcast: "connection" } as const

export const isHandOff = (message: unknown): boolean =>
  typeof message === "object" && message !== null && "pollcast" in message && message.pollcast === handOff.pollcast

/** Environment the primary gives each worker it starts. */
export const workerSlotVariable = "POLLCAST_WORKER"
export const nodeNameVariable = "POLLCAST_NODE_NAME"
