/**
 * `GET /events`: the Server-Sent Events stream of one client.
 *
 * This one route is a plain Node request handler beside the HttpRouter app (see Http.ts), because
 * a response handled by the platform keeps a suspended fiber with its whole continuation for as
 * long as it lasts: this very handler, mounted as an HttpRouter route that waits for its
 * connection to close, measured 28.7 KB per idle connection (live, at 10,000 clients) against
 * 6.0 KB here, and a connection may cost 10 KB. The Effect parts stay: parameters are decoded
 * with the same schemas and answered with the same JSON errors, and each stream's resources live
 * in a Scope closed with its connection.
 */
import { Headers, HttpTraceContext } from "@effect/platform"
import { Cause, type Context, Effect, Either, Exit, Fiber, Option, Runtime, Schema, Scope } from "effect"
import type * as NodeHttp from "node:http"
import type * as Net from "node:net"
import { type ClientConnection, EventStream } from "../Delivery/EventStream.js"
import { idRule } from "../Domain/Message.js"
import type { Channels } from "../Domain/Channels.js"
import { parseResumePoint, type ResumePoint } from "../Domain/Snapshot.js"
import * as Sse from "../Delivery/Sse.js"
import { InvalidRequest, writeAnswer } from "./HttpErrors.js"
import { channelsOf } from "../Domain/Channels.js"
import { ChannelsParam } from "./Params.js"
import { RequestPolicy } from "../Access/RequestPolicy.js"

const EventsParams = Schema.Struct({
  channel: Schema.optional(ChannelsParam),
  // For clients that cannot set the Last-Event-ID header on their first request (EventSource).
  lastEventId: Schema.optional(Schema.String)
})

const decodeParams = Schema.decodeUnknownEither(EventsParams)

export const path = "/events"

/** Whether a request is for this handler. */
export const handles = (request: NodeHttp.IncomingMessage) => {
  const url = request.url ?? ""
  const query = url.indexOf("?")
  return request.method === "GET" && (query === -1 ? url : url.slice(0, query)) === path
}

const nonEmpty = (value: string | undefined) => (value === undefined || value === "" ? undefined : value)

/** The stream's channels and starting point, or what is wrong with the request. */
const parse = (request: NodeHttp.IncomingMessage) => {
  const url = new URL(request.url ?? "/", "http://pollcast")
  const query: Record<string, string | Array<string>> = {}
  for (const [name, value] of url.searchParams) {
    const seen = query[name]
    query[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value]
  }
  const params = decodeParams(query)
  if (params._tag === "Left") return { error: InvalidRequest.fromParseError(params.left, "The query") }
  // On reconnection EventSource sends the header with the newest id, and the original URL with
  // whatever lastEventId it began with: the header wins.
  const header = nonEmpty(request.headers["last-event-id"] as string | undefined)
  const [source, raw] = header !== undefined ? ["Last-Event-ID", header] : ["lastEventId", nonEmpty(params.right.lastEventId)]
  if (raw === undefined) return { channels: channelsOf(params.right.channel), lastEventId: Option.none<ResumePoint>() }
  const resumed = parseResumePoint(raw)
  if (Either.isLeft(resumed)) {
    return {
      error: new InvalidRequest({
        field: source,
        message: `${source}: must be the id of a message sent by pollcast (${idRule}), or a position from ` +
          `pollcast_position() or GET /position: ${resumed.left}`
      })
    }
  }
  return { channels: channelsOf(params.right.channel), lastEventId: Option.some(resumed.right) }
}

const streamHeaders: NodeHttp.OutgoingHttpHeaders = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
  // An event stream is never followed by another request on its connection; closing it once the
  // stream ends lets a draining server finish at once.
  connection: "close"
}

/** The response as the EventStream sees it (a class: thousands of these are alive at once). */
class NodeConnection implements ClientConnection {
  private written = 0
  private tokenExpired = false
  /**
   * Once the head is sent, events go to the socket itself: through the response, each write
   * would also cork the socket and queue a callback to uncork it (thousands per fan-out), and the
   * system call would happen after the fan-out rather than during it, where its cost is counted.
   */
  private socket: Net.Socket | null = null

  constructor(private readonly response: NodeHttp.ServerResponse) {}

  /** Sends the response's head; from now on, events are written to its socket. */
  start(headers: NodeHttp.OutgoingHttpHeaders) {
    // The stream ends only with its connection, so it needs no chunked encoding.
    this.response.useChunkedEncodingByDefault = false
    this.response.writeHead(200, headers)
    this.response.flushHeaders()
    this.socket = this.response.socket
  }

  write(bytes: Uint8Array) {
    const socket = this.socket
    if (socket === null || socket.destroyed || this.response.writableEnded) return true
    this.written += bytes.length
    return socket.write(bytes)
  }

  queued() {
    return this.socket?.writableLength ?? 0
  }

  flushed() {
    return this.written - this.queued()
  }

  get drained() {
    const socket = this.socket
    return Effect.async<void>((resume) => {
      if (socket === null || socket.writableLength === 0 || socket.destroyed) return resume(Effect.void)
      const done = () => {
        socket.off("drain", done).off("close", done)
        resume(Effect.void)
      }
      socket.on("drain", done).on("close", done)
      return Effect.sync(() => socket.off("drain", done).off("close", done))
    })
  }

  end() {
    if (!this.response.writableEnded) this.response.end()
  }

  destroy() {
    this.response.destroy()
  }

  /** Ends a stream whose token expired; the client reconnects with Last-Event-ID and loses nothing. */
  expire() {
    if (this.response.writableEnded) return
    this.tokenExpired = true
    this.write(expiredFrame)
    this.response.end()
  }

  expired() {
    return this.tokenExpired
  }
}

const expiredFrame = new TextEncoder().encode(Sse.comment("The access token expired: reconnect with a fresh one"))

interface StreamRequest {
  readonly channels: Channels
  readonly lastEventId: Option.Option<ResumePoint>
}

/**
 * Admits the stream (RequestPolicy), then writes its head and opens it; a refusal is answered
 * with its JSON error. Built here, not in the request handler, so that none of it stays reachable
 * from the listeners that live as long as the connection.
 */
const admitThenOpen = (
  policy: Context.Tag.Service<RequestPolicy>,
  eventStream: Context.Tag.Service<EventStream>,
  request: NodeHttp.IncomingMessage,
  response: NodeHttp.ServerResponse,
  { channels, lastEventId }: StreamRequest
) => {
  const connection = new NodeConnection(response)
  return policy.admitStream(request, channels, () => connection.expire()).pipe(
    Effect.matchEffect({
      onFailure: (refused) =>
        Effect.zipRight(
          Effect.annotateCurrentSpan("http.response.status_code", refused.answer.status),
          Effect.sync(() => writeAnswer(response, refused.answer))
        ),
      onSuccess: () =>
        Effect.zipRight(
          Effect.annotateCurrentSpan("http.response.status_code", 200),
          Effect.suspend(() => {
            connection.start(streamHeaders)
            return eventStream.open({ channels, lastEventId, connection })
          })
        )
    }),
    traced(request)
  )
}

/**
 * The request's span, as the router's are (a parent from `traceparent`, the same name and
 * attributes but the query, which may hold a token): from the request to the stream being live,
 * its replay included. The stream itself, open for hours, is not a span.
 */
const traced = (request: NodeHttp.IncomingMessage) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.withSpan(effect, "http.server GET", {
    kind: "server",
    captureStackTrace: false,
    parent: Option.getOrUndefined(HttpTraceContext.fromHeaders(Headers.fromInput(request.headers))),
    attributes: {
      "http.request.method": "GET",
      "url.path": "/events",
      ...(request.headers["user-agent"] === undefined ? {} : { "user_agent.original": request.headers["user-agent"] }),
      ...(request.socket.remoteAddress === undefined ? {} : { "client.address": request.socket.remoteAddress })
    }
  })

/** A Node request handler for `GET /events`, running the streams on the current runtime. */
export const handler = Effect.gen(function*() {
  const eventStream = yield* EventStream
  const policy = yield* RequestPolicy
  const runtime = yield* Effect.runtime<never>()
  const runFork = Runtime.runFork(runtime)
  const runSync = Runtime.runSync(runtime)

  return (request: NodeHttp.IncomingMessage, response: NodeHttp.ServerResponse) => {
    const parsed = parse(request)
    if ("error" in parsed && parsed.error !== undefined) {
      response.writeHead(parsed.error.status, { "content-type": "application/json" })
      response.end(JSON.stringify(parsed.error.body))
      return
    }
    const scope = runSync(Scope.make())
    let opening: Fiber.RuntimeFiber<void> | undefined = runFork(
      admitThenOpen(policy, eventStream, request, response, parsed).pipe(
        Scope.extend(scope),
        Effect.tapErrorCause((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("An event stream failed", cause)
        )
      )
    )
    opening.addObserver((exit) => {
      opening = undefined
      if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) response.destroy()
    })
    response.once("close", () => {
      const running = opening
      runFork(Effect.zipRight(running === undefined ? Effect.void : Fiber.interrupt(running), Scope.close(scope, Exit.void)))
    })
    response.on("error", () => response.destroy())
  }
})
