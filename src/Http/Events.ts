/**
 * `GET /events`: the Server-Sent Events stream of one client, a route of the HttpRouter app.
 *
 * The route decodes the request, writes the stream's headers, and opens the client's EventStream
 * in a Scope of its own, closed when the connection closes. Its request fiber then ends: a
 * connection left open costs no fiber, the Broadcast's fan-out writes to it directly. (A route
 * whose fiber waits for its connection to close measured 28.7 KB per idle connection, live, at
 * 10,000 clients, against 6–7.5 KB this way, and a connection may cost 10 KB; see the README.)
 */
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Effect, Exit, Fiber, Option, Runtime, Schema, Scope } from "effect"
import type * as NodeHttp from "node:http"
import { type ClientConnection, EventStream } from "../EventStream.js"
import { MessageId } from "../Message.js"
import { InvalidRequest } from "./HttpErrors.js"
import { ChannelsParam, channelsOf } from "./Params.js"

const EventsParams = Schema.Struct({
  channel: Schema.optional(ChannelsParam),
  // For clients that cannot set the Last-Event-ID header on their first request (EventSource).
  lastEventId: Schema.optional(Schema.String)
})

const decodeMessageId = Schema.decodeUnknown(MessageId)

const nonEmpty = (value: string | undefined) => (value === undefined || value === "" ? undefined : value)

/** Where the stream starts: after the id in Last-Event-ID, or else in `lastEventId`; none: live. */
const startingPoint = (header: string | undefined, param: string | undefined) => {
  // On reconnection EventSource sends the header with the newest id, and the original URL with
  // whatever lastEventId it began with: the header wins.
  const [field, raw] = nonEmpty(header) !== undefined ? ["Last-Event-ID", header] : ["lastEventId", nonEmpty(param)]
  if (raw === undefined) return Effect.succeed(Option.none<MessageId>())
  return decodeMessageId(raw).pipe(
    Effect.map(Option.some),
    Effect.mapError(() =>
      new InvalidRequest({
        field,
        message: `${field}: must be the id of a message sent by pollcast (16 hex digits, '-', 16 hex digits)`
      })
    )
  )
}

const headers = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
  // An event stream is never followed by another request on its connection; closing it once the
  // stream ends lets a draining server finish at once.
  connection: "close"
}

/**
 * Tells NodeHttpServer that the route has taken its response over, so that it neither writes nor
 * ends it once the route's effect completes. Its response handling returns at once for a response
 * that reports `writableEnded`, and it looks the response up on the request (@effect/platform-node
 * 0.108, `handleResponse` in internal/httpServer.ts); no public API lets a route keep its
 * connection open without keeping its fiber. Pinned with the package; should it stop holding, the
 * platform would try to write headers of its own and its request fiber would die with an error,
 * which a test of the HTTP API looks for.
 */
const handedOver: Pick<NodeHttp.ServerResponse, "writableEnded"> = Object.freeze({ writableEnded: true })
const handOver = (request: HttpServerRequest.HttpServerRequest) => {
  ;(request as unknown as { response: Pick<NodeHttp.ServerResponse, "writableEnded"> }).response = handedOver
}

/** The response as the EventStream sees it (a class: thousands of these are alive at once). */
class NodeConnection implements ClientConnection {
  constructor(private readonly response: NodeHttp.ServerResponse) {}

  write(bytes: Uint8Array) {
    return this.response.writableEnded || this.response.destroyed ? true : this.response.write(bytes)
  }

  queued() {
    return this.response.writableLength
  }

  get drained() {
    const response = this.response
    return Effect.async<void>((resume) => {
      if (response.writableLength === 0 || response.destroyed) return resume(Effect.void)
      const done = () => resume(Effect.void)
      response.once("drain", done).once("close", done)
      return Effect.sync(() => response.off("drain", done).off("close", done))
    })
  }

  end() {
    if (!this.response.writableEnded) this.response.end()
  }

  destroy() {
    this.response.destroy()
  }
}

export const routes = Effect.gen(function*() {
  const eventStream = yield* EventStream
  // Each stream runs in a fiber of its own on the service's runtime, not in the request's fiber,
  // which ends once the stream is open.
  const runtime = yield* Effect.runtime<never>()
  const runFork = Runtime.runFork(runtime)
  const runSync = Runtime.runSync(runtime)

  const openStream = (response: NodeHttp.ServerResponse, options: {
    readonly channels: ReturnType<typeof channelsOf>
    readonly lastEventId: Option.Option<MessageId>
  }) => {
    const scope = runSync(Scope.make())
    let opening: Fiber.RuntimeFiber<void> | undefined = runFork(
      eventStream.open({ ...options, connection: new NodeConnection(response) }).pipe(
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

  const events = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const params = yield* HttpServerRequest.schemaSearchParams(EventsParams).pipe(
      Effect.mapError((error) => InvalidRequest.fromParseError(error, "The query"))
    )
    const lastEventId = yield* startingPoint(request.headers["last-event-id"], params.lastEventId)
    if (request.method === "HEAD") return HttpServerResponse.empty({ status: 200, headers })

    const response = NodeHttpServerRequest.toServerResponse(request)
    // The stream ends only with its connection, so it needs no chunked encoding: each write is
    // then one buffer to the socket instead of three (size line, data, CRLF).
    response.useChunkedEncodingByDefault = false
    response.writeHead(200, headers)
    openStream(response, { channels: channelsOf(params.channel), lastEventId })
    handOver(request)
    return HttpServerResponse.empty({ status: 200 })
  })

  return HttpRouter.empty.pipe(HttpRouter.get("/events", events))
})
