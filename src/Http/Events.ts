/**
 * `GET /events`: the Server-Sent Events stream of one client.
 *
 * This one route is a plain Node request handler beside the HttpRouter app (see Http.ts), because
 * a response handled by the platform keeps a suspended fiber with its whole continuation for as
 * long as it lasts: this very handler, mounted as an HttpRouter route that waits for its
 * connection to close, measured 28.7 KB per idle connection (live, at 10,000 clients) against
 * 6.0 KB here, and a connection may cost 10 KB. Once its head is sent, the stream's connection is
 * taken over from Node's HTTP server (Takeover.ts): 4.2–5.1 KB at 10,000 clients. The Effect parts
 * stay: parameters are decoded with the same schemas and answered with the same JSON errors, and
 * each stream's resources live in a Scope closed with its connection.
 */
import { Headers, HttpTraceContext } from "@effect/platform"
import { Cause, type Context, Effect, Either, Exit, Fiber, Option, Runtime, Schema, Scope } from "effect"
import type * as NodeHttp from "node:http"
import type * as Net from "node:net"
import type { RequestParts } from "../Access/Request.js"
import { RequestPolicy } from "../Access/RequestPolicy.js"
import * as Api from "../Api.js"
import { type ClientConnection, EventStream } from "../Delivery/EventStream.js"
import type { Channels } from "../Domain/Channels.js"
import { InvalidRequest } from "../Domain/Errors.js"
import { parseResumePoint, type ResumePoint } from "../Domain/Snapshot.js"
import * as Answer from "./Answer.js"
import type { InFlight } from "./InFlight.js"
import * as Takeover from "./Takeover.js"
import * as Request from "./Request.js"

const decodeParams = Schema.decodeUnknownEither(Api.EventsParams)
const decodeHeaders = Schema.decodeUnknownEither(Api.EventsHeaders)

/** Whether a request is for this handler. */
export const handles = (request: RequestParts) =>
  request.method === Api.eventsEndpoint.method && request.path === Api.eventsEndpoint.path

// The header's name as clients write it, for errors.
const lastEventIdHeader = "Last-Event-ID"

/** The stream's channels and starting point, or what is wrong with the request. */
const parse = (request: NodeHttp.IncomingMessage): StreamRequest | InvalidRequest => {
  const params = decodeParams(Request.queryOf(request.url ?? "/"))
  if (Either.isLeft(params)) return InvalidRequest.fromParseError(params.left, "The query")
  const headers = decodeHeaders(request.headers)
  if (Either.isLeft(headers)) {
    const invalid = InvalidRequest.fromParseError(headers.left, "The headers")
    return new InvalidRequest({ field: lastEventIdHeader, message: invalid.message.replace(/^last-event-id/, lastEventIdHeader) })
  }
  // On reconnection EventSource sends the header with the newest id, and the original URL with
  // whatever lastEventId it began with: the header wins.
  const position = nonEmpty(headers.right["last-event-id"]) ?? nonEmpty(params.right.lastEventId)
  if (position === undefined) return { channels: params.right.channel, lastEventId: Option.none() }
  // Valid, as the schemas checked.
  return { channels: params.right.channel, lastEventId: Option.getRight(parseResumePoint(position)) }
}

const nonEmpty = (value: string | undefined) => (value === undefined || value === "" ? undefined : value)

const streamHeaders: NodeHttp.OutgoingHttpHeaders = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
  // An event stream is never followed by another request on its connection; closing it once the
  // stream ends lets a draining server finish at once.
  connection: "close"
}

/**
 * The stream's connection as the EventStream sees it (a class: thousands of these are alive at
 * once). Once the head is sent, the connection is taken over from the HTTP server (Takeover.ts)
 * and events go to its socket: through the response, each write would also cork the socket and
 * queue a callback to uncork it (thousands per fan-out), and the system call would happen after
 * the fan-out rather than during it, where its cost is counted.
 */
class NodeConnection implements ClientConnection {
  private written = 0
  private socket: Net.Socket | null = null

  /**
   * Sends the response's head, then takes the connection over; `started` is told its socket at
   * once, before the response, its part done, closes.
   */
  start(
    request: NodeHttp.IncomingMessage,
    response: NodeHttp.ServerResponse,
    headers: NodeHttp.OutgoingHttpHeaders,
    started: (socket: Net.Socket) => void
  ) {
    // The stream ends only with its connection, so it needs no chunked encoding.
    response.useChunkedEncodingByDefault = false
    response.writeHead(200, headers)
    response.flushHeaders()
    this.socket = response.socket!
    started(this.socket)
    // Not while Node's parser may still be running on the request (as it is when the stream was
    // admitted at once): a parser freed then would be listed again as the message completes.
    setImmediate(takeOver, request, response)
  }

  write(bytes: Uint8Array) {
    const socket = this.socket
    if (socket === null || socket.destroyed || socket.writableEnded) return true
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

  /** Ends the stream once what is queued is sent, and closes the connection (as Node does for a response with `connection: close`). */
  end() {
    if (this.socket !== null && !this.socket.writableEnded) this.socket.destroySoon()
  }

  destroy() {
    this.socket?.destroy()
  }
}

/**
 * What a stream's end ends: the fiber still opening it, if any, then its scope (which gives back
 * what it was admitted with and unsubscribes it). Until the stream starts, its request's response
 * closing (the client went away) is its end; from then on, its connection closing.
 */
class StreamEnd {
  opening: Fiber.RuntimeFiber<void> | undefined = undefined
  private started = false
  private socket: Net.Socket | undefined = undefined

  constructor(
    private readonly scope: Scope.CloseableScope,
    private readonly runFork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
  ) {}

  /** The connection is the stream's: its closing ends the stream, and shutdown waits for it. */
  start(socket: Net.Socket, streams: InFlight<Net.Socket>) {
    this.started = true
    this.socket = socket
    // A client that went away while its stream was admitted: its connection closed already.
    if (socket.destroyed) return this.end()
    streams.enter(socket)
    socket.on("close", () => {
      streams.leave(socket)
      this.end()
    })
  }

  /** Drops the connection: the stream failed to open. */
  destroy(response: NodeHttp.ServerResponse) {
    if (this.socket !== undefined) this.socket.destroy()
    else response.destroy()
  }

  responseClosed() {
    if (!this.started) this.end()
  }

  private end() {
    const running = this.opening
    this.runFork(Effect.zipRight(running === undefined ? Effect.void : Fiber.interrupt(running), Scope.close(this.scope, Exit.void)))
  }
}

function takeOver(request: NodeHttp.IncomingMessage, response: NodeHttp.ServerResponse) {
  if (Takeover.takeOver(request, response) !== undefined) response.emit("close")
}

function destroyResponse(this: NodeHttp.ServerResponse) {
  this.destroy()
}

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
  parts: RequestParts,
  request: NodeHttp.IncomingMessage,
  response: NodeHttp.ServerResponse,
  { channels, lastEventId }: StreamRequest,
  started: (socket: Net.Socket) => void
) =>
  policy.admitStream(parts, channels).pipe(
    Effect.matchEffect({
      onFailure: (refused) => {
        const answer = Answer.answerOf(refused)
        return Effect.zipRight(
          Effect.annotateCurrentSpan("http.response.status_code", answer.status),
          Effect.sync(() => Answer.write(response, answer))
        )
      },
      onSuccess: ({ expiresAt }) =>
        Effect.zipRight(
          Effect.annotateCurrentSpan("http.response.status_code", 200),
          Effect.suspend(() => {
            const connection = new NodeConnection()
            connection.start(request, response, streamHeaders, started)
            return eventStream.open({ channels, lastEventId, connection, expiresAt })
          })
        )
    }),
    traced(request)
  )

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

/**
 * A Node request handler for `GET /events`, running the streams on the current runtime; the
 * connections it takes over are in `streams` until they close.
 */
export const handler = (streams: InFlight<Net.Socket>) =>
  Effect.gen(function*() {
    const eventStream = yield* EventStream
    const policy = yield* RequestPolicy
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const runSync = Runtime.runSync(runtime)

    return (parts: RequestParts, request: NodeHttp.IncomingMessage, response: NodeHttp.ServerResponse) => {
      const parsed = parse(request)
      if (parsed instanceof InvalidRequest) return Answer.write(response, Answer.answerOf(parsed))
      const scope = runSync(Scope.make())
      const end = new StreamEnd(scope, runFork)
      const opening = runFork(
        admitThenOpen(policy, eventStream, parts, request, response, parsed, (socket) => end.start(socket, streams)).pipe(
          Scope.extend(scope),
          Effect.tapErrorCause((cause) =>
            Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("An event stream failed", cause)
          )
        )
      )
      end.opening = opening
      opening.addObserver((exit) => {
        end.opening = undefined
        if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) end.destroy(response)
      })
      response.on("close", () => end.responseClosed())
      response.on("error", destroyResponse)
    }
  })
