/**
 * A real, spec-conformant SSE client (the `eventsource` package) that records what it receives, and
 * reconnects with Last-Event-ID as a browser would.
 */
import { Duration, Effect } from "effect"
import { EventSource } from "eventsource"

export interface ReceivedMessage {
  readonly id: string
  readonly channel: string
  readonly author: string
  readonly body: string
  readonly createdAt: string
}

/** A `reset` event: the id it carries, and its data. */
export interface ReceivedReset {
  readonly id: string
  readonly reason: string
  readonly lastEventId: string
}

export interface SseClient {
  readonly source: EventSource
  /** Every message event, in arrival order. */
  readonly messages: Array<ReceivedMessage>
  /** The SSE id of each of them (what Last-Event-ID would carry after it). */
  readonly eventIds: Array<string>
  /** Every reset event, in arrival order. */
  readonly resets: Array<ReceivedReset>
  /** How many times the connection opened (1 + reconnections). */
  readonly opens: () => number
  /** Waits (real time) until `done` holds; fails after `timeout`. */
  readonly waitUntil: (done: () => boolean, timeout?: Duration.DurationInput) => Effect.Effect<void, Error>
  readonly bodies: () => Array<string>
}

/** Runs `probe` until `done` holds of its result (real time, every 20 ms); fails after `timeout`. */
export const eventually = <A, E, R>(
  probe: Effect.Effect<A, E, R>,
  done: (value: A) => boolean,
  timeout: Duration.DurationInput = "10 seconds",
  what = "condition"
) =>
  Effect.suspend(function loop(): Effect.Effect<A, E, R> {
    return Effect.flatMap(probe, (value) => (done(value) ? Effect.succeed(value) : Effect.sleep("20 millis").pipe(Effect.zipRight(Effect.suspend(loop)))))
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`Timed out after ${Duration.format(Duration.decode(timeout))} waiting for ${what}`)
    })
  )

export const waitUntil = (done: () => boolean, timeout: Duration.DurationInput = "10 seconds", what = "condition") =>
  Effect.asVoid(eventually(Effect.sync(done), (finished) => finished, timeout, what))

export interface ConnectOptions {
  readonly lastEventId?: string
  /** Headers for each (re)connection, read when it is made: a token, say. */
  readonly headers?: () => Record<string, string>
}

/** Opens an EventSource on `url`; the first request carries `lastEventId` as Last-Event-ID. */
export const connect = (url: string, options: ConnectOptions = {}) =>
  Effect.acquireRelease(
    Effect.sync((): SseClient => {
      let opens = 0
      const messages: Array<ReceivedMessage> = []
      const eventIds: Array<string> = []
      const resets: Array<ReceivedReset> = []
      const source = new EventSource(url, {
        fetch: (input, init) => {
          const headers = new Headers(init?.headers)
          for (const [name, value] of Object.entries(options.headers?.() ?? {})) headers.set(name, value)
          if (opens === 0 && options.lastEventId !== undefined && !headers.has("last-event-id")) {
            headers.set("last-event-id", options.lastEventId)
          }
          return fetch(input, { ...init, headers })
        }
      })
      source.addEventListener("open", () => {
        opens++
      })
      source.addEventListener("message", (event) => {
        messages.push(JSON.parse(event.data) as ReceivedMessage)
        eventIds.push(event.lastEventId)
      })
      source.addEventListener("reset", (event) => {
        resets.push({ id: event.lastEventId, ...(JSON.parse(event.data) as Omit<ReceivedReset, "id">) })
      })
      return {
        source,
        messages,
        eventIds,
        resets,
        opens: () => opens,
        waitUntil: (done, timeout) => waitUntil(done, timeout, `events from ${url}`),
        bodies: () => messages.map((message) => message.body)
      }
    }),
    (client) => Effect.sync(() => client.source.close())
  )

/** Opens a client and waits until its stream is open. */
export const connected = (url: string, options: ConnectOptions = {}) =>
  Effect.tap(connect(url, options), (client) => waitUntil(() => client.opens() > 0, "10 seconds", `${url} to open`))
