/**
 * The HTTP API, declared once with HttpApi: the JSON endpoints with the schemas the routes decode
 * with and the errors they answer, plus `GET /events` with its parameters and event format. The
 * OpenAPI document (`/openapi.json`, `/docs`) and the typed client (src/client/) are derived from
 * it; a contract test holds the routes to it (test/integration/Contract.test.ts).
 *
 * The routes themselves stay HttpRouter routes and the /events handler (see the README for the
 * measurement behind this), so the declaration describes them rather than serving them.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Channel, Message, MessageId, NewMessageRequest } from "./Domain/Message.js"
import { maxChannelsPerRequest } from "./Domain/Channels.js"
import { Position } from "./Domain/Snapshot.js"

/** An error as every route answers it: `{ "error": tag, "message": text, "field"?: name }`. */
const errorBody = <const Tag extends string>(tag: Tag, status: number, description: string) =>
  Schema.Struct({
    error: Schema.Literal(tag),
    message: Schema.String,
    field: Schema.optional(Schema.String.annotations({ description: "The body field, query parameter or header at fault" }))
  }).annotations(HttpApiSchema.annotations({ status, identifier: tag, description }))

export const InvalidRequest = errorBody("InvalidRequest", 400, "The request is malformed; `field` names what is wrong")
export const Unauthorized = errorBody(
  "Unauthorized",
  401,
  "No usable access token where one is needed (with WWW-Authenticate: Bearer)"
)
export const Forbidden = errorBody("Forbidden", 403, "The token does not allow this; the message names the channel")
export const OriginNotAllowed = errorBody(
  "OriginNotAllowed",
  403,
  "A browser request from a web page whose origin is neither the node's own nor in CORS_ORIGINS"
)
export const NotFound = errorBody("NotFound", 404, "No such route")
export const PayloadTooLarge = errorBody(
  "PayloadTooLarge",
  413,
  "The request body is larger than 6 × MAX_BODY_BYTES + 2048 bytes; the rest is not read"
)
export const UnsupportedMediaType = errorBody("UnsupportedMediaType", 415, "POST bodies must be sent as application/json")
export const TooManyRequests = errorBody("TooManyRequests", 429, "A limit was reached; Retry-After says when to try again")
export const ServiceUnavailable = errorBody(
  "ServiceUnavailable",
  503,
  "The database (or the identity provider's key set) is unavailable, or the node holds MAX_STREAMS; with Retry-After"
)

const ChannelsParam = Schema.Union(Channel, Schema.Array(Channel).pipe(Schema.maxItems(maxChannelsPerRequest))).annotations({
  description: `A channel to read; repeat it for several (at most ${maxChannelsPerRequest}). None: every channel`
})

export const HistoryParams = Schema.Struct({
  channel: Schema.optional(ChannelsParam),
  after: Schema.optional(
    MessageId.annotations({ description: "The messages after this id, oldest first (a forward page)" })
  ),
  before: Schema.optional(
    MessageId.annotations({ description: "The messages just before this id (not with after)" })
  ),
  limit: Schema.optional(
    Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500)).annotations({
      description: "Messages per page, 1 to 500",
      default: 100
    })
  )
})

export const HistoryPage = Schema.Struct({
  messages: Schema.Array(Message).annotations({ description: "In delivery order" }),
  next: Schema.NullOr(MessageId).annotations({
    description: "Forward pages: pass as `after` for the following page; null once the page reaches the newest message"
  }),
  previous: Schema.NullOr(MessageId).annotations({
    description: "Newest and `before` pages: pass as `before` for the page before; null at the oldest"
  }),
  lastEventId: MessageId.annotations({
    description: "Pass as Last-Event-ID (or lastEventId) to /events to continue live right after this page"
  })
}).annotations({ identifier: "HistoryPage" })

export const EventsParams = Schema.Struct({
  channel: Schema.optional(ChannelsParam),
  lastEventId: Schema.optional(
    Position.annotations({
      description:
        "For a first connection that cannot set the Last-Event-ID header (EventSource); the header wins. " +
        "A message id, or a position from pollcast_position() or GET /position"
    })
  ),
  access_token: Schema.optional(
    Schema.String.annotations({
      description: "The last resort for clients that can neither set Authorization nor send the pollcast_token cookie"
    })
  )
})

export const eventFormat = `One event per message, after a first \`retry:\` field (SSE_RETRY):

    id: <message id>
    event: message
    data: <the message as JSON: {"id", "channel", "author", "body", "createdAt"}>

and a \`: heartbeat\` comment every HEARTBEAT_INTERVAL. A client resuming from an id this database
never issued (\`ahead\`), or older than what retention kept (\`expired\`), first gets

    id: <the position it continues from>
    event: reset
    data: {"reason": "ahead" | "expired", "lastEventId": "<that position>"}

then what follows that position. The stream ends when the node shuts down, when the client falls
more than CLIENT_BUFFER_BYTES behind or reads nothing for CLIENT_STALL_TIMEOUT, or when its token
expires (after a comment saying so); reconnect with Last-Event-ID and nothing is lost.`

const ReadyBody = Schema.Struct({
  status: Schema.Literal("ready", "unavailable"),
  database: Schema.Literal("reachable", "unreachable"),
  poller: Schema.Literal("polling", "overdue"),
  lastPollMillisAgo: Schema.Number,
  writes: Schema.Literal("succeeding", "failing"),
  wakeup: Schema.Literal("disabled", "connecting", "listening", "reconnecting")
}).annotations({ identifier: "Readiness" })

const PositionBody = Schema.Struct({
  position: Position
}).annotations({ identifier: "Position" })

export const PositionParams = Schema.Struct({
  channel: Schema.optional(ChannelsParam),
  access_token: Schema.optional(Schema.String)
})

/** POST and GET /messages; `maxBodyBytes` is MAX_BODY_BYTES, which bounds a message's body. */
export const messagesGroup = (maxBodyBytes: number) =>
  HttpApiGroup.make("messages")
    .add(
      HttpApiEndpoint.post("publish", "/messages")
        .setPayload(NewMessageRequest(maxBodyBytes))
        .addSuccess(Message, { status: 201 })
        .addError(InvalidRequest)
        .addError(Unauthorized)
        .addError(Forbidden)
        .addError(OriginNotAllowed)
        .addError(PayloadTooLarge)
        .addError(UnsupportedMediaType)
        .addError(TooManyRequests)
        .addError(ServiceUnavailable)
        .annotate(OpenApi.Summary, "Publish a message")
        .annotate(
          OpenApi.Description,
          "Stores the message and answers it as stored. With an access token, `author` is the token's name, whatever the body says."
        )
    )
    .add(
      HttpApiEndpoint.get("history", "/messages")
        .setUrlParams(HistoryParams)
        .addSuccess(HistoryPage)
        .addError(InvalidRequest)
        .addError(Unauthorized)
        .addError(Forbidden)
        .addError(OriginNotAllowed)
        .addError(ServiceUnavailable)
        .annotate(OpenApi.Summary, "Read stored messages, a page at a time")
        .annotate(
          OpenApi.Description,
          "Only final messages: exactly those a subscriber has been or is about to be sent. With neither `after` nor `before`, the newest page."
        )
    )
    .annotate(OpenApi.Description, "Publishing and history")

/** The API's declaration; `maxBodyBytes` is MAX_BODY_BYTES, which bounds a message's body. */
export const make = (maxBodyBytes: number) =>
  HttpApi.make("pollcast")
    .add(messagesGroup(maxBodyBytes))
    .add(
      HttpApiGroup.make("events")
        .add(
          HttpApiEndpoint.get("events", "/events")
            .setUrlParams(EventsParams)
            .setHeaders(
              Schema.Struct({
                "last-event-id": Schema.optional(
                  Position.annotations({
                    description:
                      "The id of the last message received: the stream replays what follows it (or a position from pollcast_position() or GET /position)"
                  })
                )
              })
            )
            .addSuccess(HttpApiSchema.Text({ contentType: "text/event-stream" }).annotations({ description: eventFormat }))
            .addError(InvalidRequest)
            .addError(Unauthorized)
            .addError(Forbidden)
            .addError(OriginNotAllowed)
            .addError(TooManyRequests)
            .addError(ServiceUnavailable)
            .annotate(OpenApi.Summary, "Follow channels live (Server-Sent Events)")
            .annotate(OpenApi.Description, eventFormat)
        )
        .add(
          HttpApiEndpoint.get("position", "/position")
            .setUrlParams(PositionParams)
            .addSuccess(PositionBody)
            .addError(InvalidRequest)
            .addError(Unauthorized)
            .addError(Forbidden)
            .addError(OriginNotAllowed)
            .addError(ServiceUnavailable)
            .annotate(OpenApi.Summary, "Where the database is now, to follow from")
            .annotate(
              OpenApi.Description,
              "The position of a snapshot taken now (pollcast_position()): /events from it delivers exactly the messages " +
                "that snapshot did not see. Inside a transaction of your own, SELECT pollcast_position() gives the one " +
                "matching what that transaction read. `channel`: the channels you will follow (checked against the token)."
            )
        )
        .annotate(OpenApi.Description, "The live stream")
    )
    .add(
      HttpApiGroup.make("operations")
        .add(
          HttpApiEndpoint.get("healthz", "/healthz")
            .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
            .addError(Schema.Struct({ status: Schema.Literal("restart needed"), reason: Schema.String }), { status: 503 })
            .annotate(OpenApi.Summary, "The process answers, and can go on without a restart")
        )
        .add(
          HttpApiEndpoint.get("readyz", "/readyz")
            .addSuccess(ReadyBody)
            .addError(ReadyBody, { status: 503 })
            .annotate(
              OpenApi.Summary,
              "The database answers, the poller has polled within 3 × POLL_INTERVAL + 5 s, and writes are not failing"
            )
        )
        .add(
          HttpApiEndpoint.get("metrics", "/metrics")
            .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4" }).annotations({
              description: "Every metric, in Prometheus' text exposition format"
            }))
            .addError(Unauthorized)
            .addError(Forbidden)
            .addError(ServiceUnavailable)
            .annotate(OpenApi.Summary, "Metrics for Prometheus (the admin claim, once access control is on)")
        )
        .add(
          HttpApiEndpoint.get("stats", "/stats")
            .addSuccess(Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
              description: "This node's figures as JSON: clients, subscribers, position, polls, wakeup, limits"
            }))
            .addError(Unauthorized)
            .addError(Forbidden)
            .addError(ServiceUnavailable)
            .annotate(OpenApi.Summary, "This node's figures (the admin claim, once access control is on)")
        )
        .annotate(OpenApi.Description, "Health, readiness and figures for operators")
    )
    .addError(NotFound)
    .annotate(OpenApi.Title, "pollcast")
    .annotate(OpenApi.Version, "1")
    .annotate(
      OpenApi.Description,
      "A real-time message service: messages stored in PostgreSQL, pushed to clients over Server-Sent Events. " +
        "Once access control is on, requests carry a JWT as `Authorization: Bearer`, the `pollcast_token` cookie, " +
        "or (last resort) `access_token`."
    )

export type Api = ReturnType<typeof make>
