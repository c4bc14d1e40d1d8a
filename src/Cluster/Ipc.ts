/**
 * The channel between a node's primary and one of its workers: node:cluster's IPC pipe, with
 * structured cloning ("advanced" serialization, so that a batch's frames cross as bytes), carrying
 * one-way events and calls answered by id. Each side declares what it sends (Protocol.ts).
 *
 * Not @effect/platform's Worker nor @effect/rpc: those run requests from a parent to its child,
 * while here each side calls the other (a worker asks its primary to admit a stream, the primary
 * asks its workers for their figures), over the channel node:cluster opens to each worker.
 */
import type { Serializable } from "node:child_process"
import { Data, Deferred, Duration, Effect, Exit, FiberId, Runtime } from "effect"

/** The process's end of the channel (`process` in a worker, `worker.process`'s in the primary). */
export interface Port {
  readonly send: (message: Serializable) => unknown
  readonly on: (event: "message", listener: (message: unknown) => void) => unknown
  readonly off: (event: "message", listener: (message: unknown) => void) => unknown
}

/** Calls by name: what each takes and gives back. */
export type Calls = Record<string, { readonly request: unknown; readonly response: unknown }>

/** How a side answers the calls of the other. */
export type Handlers<C extends Calls> = {
  readonly [K in keyof C]: (request: C[K]["request"]) => Effect.Effect<C[K]["response"]>
}

export class IpcError extends Data.TaggedError("IpcError")<{ readonly message: string }> {}

type Envelope =
  | { readonly ipc: "event"; readonly event: unknown }
  | { readonly ipc: "call"; readonly id: number; readonly name: string; readonly request: unknown }
  | { readonly ipc: "reply"; readonly id: number; readonly response: unknown }

const isEnvelope = (message: unknown): message is Envelope =>
  typeof message === "object" && message !== null && "ipc" in message

/** A call not answered in this time fails: the other side is gone or stuck. */
const callTimeout = Duration.seconds(5)

export interface Link<Out extends Calls, OutEvent> {
  readonly call: <K extends keyof Out & string>(name: K, request: Out[K]["request"]) => Effect.Effect<Out[K]["response"], IpcError>
  /** Sends an event; dropped once the channel is closed. */
  readonly emit: (event: OutEvent) => void
  /** Fails every call waiting for an answer: the other side is gone. */
  readonly close: () => void
}

/**
 * Listens on `port` (until `close`), answering the other side's calls with `handlers` and handing
 * its events to `onEvent`, synchronously and in the order they came.
 */
export const link = <Out extends Calls, In extends Calls, OutEvent, InEvent>(
  port: Port,
  handlers: Handlers<In>,
  onEvent: (event: InEvent) => void
) =>
  Effect.map(Effect.runtime<never>(), (runtime): Link<Out, OutEvent> => {
    const runFork = Runtime.runFork(runtime)
    const waiting = new Map<number, Deferred.Deferred<unknown, IpcError>>()
    let nextId = 0
    let closed = false
    const send = (envelope: Envelope) => {
      if (closed) return
      try {
        port.send(envelope)
      } catch {
        // The channel closed under us; the exit handler says so.
      }
    }
    const listener = (message: unknown) => {
      if (!isEnvelope(message)) return
      switch (message.ipc) {
        case "event":
          return onEvent(message.event as InEvent)
        case "reply": {
          const deferred = waiting.get(message.id)
          waiting.delete(message.id)
          if (deferred !== undefined) Deferred.unsafeDone(deferred, Exit.succeed(message.response))
          return
        }
        case "call": {
          const handler = handlers[message.name] as ((request: unknown) => Effect.Effect<unknown>) | undefined
          if (handler === undefined) return
          const id = message.id
          runFork(Effect.map(handler(message.request), (response) => send({ ipc: "reply", id, response })))
        }
      }
    }
    port.on("message", listener)
    return {
      call: (name, request) =>
        Effect.suspend(() => {
          if (closed) return Effect.fail(new IpcError({ message: "the channel is closed" }))
          const id = nextId++
          const deferred = Deferred.unsafeMake<unknown, IpcError>(FiberId.none)
          waiting.set(id, deferred)
          send({ ipc: "call", id, name, request })
          // What the other side's handler for `name` gave back (both sides are built from Protocol.ts).
          const answered = Deferred.await(deferred) as Effect.Effect<Out[typeof name]["response"], IpcError>
          return answered.pipe(
            Effect.timeoutFail({
              duration: callTimeout,
              onTimeout: () => new IpcError({ message: `no answer to ${name} within ${Duration.format(callTimeout)}` })
            }),
            Effect.ensuring(Effect.sync(() => waiting.delete(id)))
          )
        }),
      emit: (event) => send({ ipc: "event", event }),
      close: () => {
        closed = true
        port.off("message", listener)
        for (const deferred of waiting.values()) Deferred.unsafeDone(deferred, Exit.fail(new IpcError({ message: "the other process is gone" })))
        waiting.clear()
      }
    }
  })
