/**
 * `GET /events`: the Server-Sent Events stream of one client.
 */
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Option, Schema } from "effect"
import { EventStream } from "../EventStream.js"
import { MessageId } from "../Message.js"
import { InvalidRequest } from "./HttpErrors.js"
import { ChannelsParam, channelsOf } from "./Params.js"

const EventsParams = Schema.Struct({
  channel: Schema.optional(ChannelsParam),
  // For clients that cannot set the Last-Event-ID header on their first request (EventSource).
  lastEventId: Schema.optional(Schema.String)
})

const decodeMessageId = Schema.decodeUnknown(MessageId)

const nonEmpty = (value: string | undefined) => (value === undefined || value === "" ? Option.none() : Option.some(value))

export const routes = Effect.gen(function*() {
  const eventStream = yield* EventStream

  const events = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const params = yield* HttpServerRequest.schemaSearchParams(EventsParams).pipe(
      Effect.mapError((error) => InvalidRequest.fromParseError(error, "The query"))
    )
    // On reconnection EventSource sends the header with the newest id, and the original URL with
    // whatever lastEventId it began with: the header wins.
    const header = nonEmpty(request.headers["last-event-id"])
    const [source, raw] = Option.isSome(header)
      ? ["Last-Event-ID", header]
      : ["lastEventId", nonEmpty(params.lastEventId)]
    const lastEventId = yield* Effect.transposeOption(Option.map(raw, (id) => decodeMessageId(id))).pipe(
      Effect.mapError(() =>
        new InvalidRequest({
          field: source,
          message: `${source}: must be the id of a message sent by pollcast (16 hex digits, '-', 16 hex digits)`
        })
      )
    )
    const response = NodeHttpServerRequest.toServerResponse(request)
    const body = yield* eventStream.open({
      channels: channelsOf(params.channel),
      lastEventId,
      // Destroying the socket also ends a write that waits for a client that stopped reading.
      onOverflow: () => response.destroy()
    })
    return HttpServerResponse.raw(body, {
      contentType: "text/event-stream",
      headers: {
        "cache-control": "no-cache, no-transform",
        "x-accel-buffering": "no",
        // An event stream is never followed by another request on its connection; closing it once
        // the stream ends lets a draining server finish at once.
        connection: "close"
      }
    })
  })

  return HttpRouter.empty.pipe(HttpRouter.get("/events", events))
})
