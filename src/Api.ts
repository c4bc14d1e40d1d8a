/**
 * The HTTP API, declared once: every path, parameter (with its bounds and default), body, answer
 * and error. The router serves the JSON endpoints from this declaration (HttpApiBuilder, see
 * src/Http/Routes.ts); `GET /events` is a plain Node handler beside it (see src/Http/Events.ts for
 * the measurement) that decodes its parameters with the schemas declared here and fails with the
 * same errors. The OpenAPI document (`/openapi.json`, `/docs`) and the typed client (src/client/)
 * are derived from it too; test/integration/Contract.test.ts holds the served routes to it.
 */
import { HttpApi, HttpApiEndpoint, HttpApiError, HttpApiGroup, HttpApiSchema, type HttpMethod, OpenApi } from "@effect/platform"
import { JSONSchema, Option, Schema, SchemaAST as AST } from "effect"
import type * as JsonSchema from "@effect/platform/OpenApiJsonSchema"
import { type Channels, maxChannelsPerRequest } from "./Domain/Channels.js"
import {
  Forbidden,
  type HttpError,
  InvalidRequest,
  NotFound,
  OriginNotAllowed,
  PayloadTooLarge,
  ServiceUnavailable,
  TooManyRequests,
  Unauthorized,
  UnsupportedMediaType
} from "./Domain/Errors.js"
import { Channel, Message, MessageId, NewMessage } from "./Domain/Message.js"
import { Position } from "./Domain/Snapshot.js"

// --- Errors ---

/**
 * An error as it is answered: its status, and the JSON body `{ "error": tag, "message": text,
 * "field"?: name }` it is encoded to (and that a client decodes it from).
 */
const answered = <A extends HttpError, Tag extends A["_tag"]>(
  error: Schema.Schema<A, { readonly _tag: Tag; readonly message: string; readonly field?: string | undefined }>,
  tag: Tag,
  status: number,
  description: string
) =>
  Schema.transform(
    Schema.Struct({
      error: Schema.Literal(tag),
      message: Schema.String,
      field: Schema.optional(Schema.String.annotations({ description: "The body field, query parameter or header at fault" }))
    }),
    Schema.encodedSchema(error),
    {
      strict: false,
      decode: ({ error, field, message }) => (field === undefined ? { _tag: error, message } : { _tag: error, message, field }),
      encode: (encoded) =>
        encoded.field === undefined
          ? { error: encoded._tag, message: encoded.message }
          : { error: encoded._tag, message: encoded.message, field: encoded.field }
    }
  ).pipe(Schema.compose(error)).annotations(HttpApiSchema.annotations({ status, identifier: tag, description }))

/** Every error the API answers with, by tag: its status and body are the declaration's. */
export const errors = {
  InvalidRequest: answered(InvalidRequest, "InvalidRequest", 400, "The request is malformed; `field` names what is wrong"),
  Unauthorized: answered(
    Unauthorized,
    "Unauthorized",
    401,
    "No usable access token where one is needed (with WWW-Authenticate: Bearer)"
  ),
  Forbidden: answered(Forbidden, "Forbidden", 403, "The token does not allow this; the message names the channel"),
  OriginNotAllowed: answered(
    OriginNotAllowed,
    "OriginNotAllowed",
    403,
    "A browser request from a web page whose origin is neither the node's own nor in CORS_ORIGINS"
  ),
  NotFound: answered(NotFound, "NotFound", 404, "No such route"),
  PayloadTooLarge: answered(
    PayloadTooLarge,
    "PayloadTooLarge",
    413,
    "The request body is larger than 6 × MAX_BODY_BYTES + 2048 bytes; the rest is not read"
  ),
  UnsupportedMediaType: answered(
    UnsupportedMediaType,
    "UnsupportedMediaType",
    415,
    "POST bodies must be sent as application/json"
  ),
  TooManyRequests: answered(TooManyRequests, "TooManyRequests", 429, "A limit was reached; Retry-After says when to try again"),
  ServiceUnavailable: answered(
    ServiceUnavailable,
    "ServiceUnavailable",
    503,
    "The database (or the identity provider's key set) is unavailable, or the node holds MAX_STREAMS; with Retry-After"
  )
} satisfies { readonly [Tag in HttpError["_tag"]]: Schema.Schema<Extract<HttpError, { _tag: Tag }>, any> }

/** The declared error of tag `Tag`. */
export type ErrorOf<Tag extends HttpError["_tag"]> = Extract<HttpError, { readonly _tag: Tag }>

/** An error's status, as declared. */
export const statusOf = (error: HttpError): number => HttpApiSchema.getStatusErrorAST(errors[error._tag].ast)

/** An error's JSON body, as declared. */
export const encodeError = Schema.encodeSync(Schema.Union(...Object.values(errors)))

/**
 * The largest request body read. JSON escaping can make a body of MAX_BODY_BYTES take six times as
 * many bytes (`\u0001` for one byte), and channel and author add some more.
 */
export const maxRequestBytes = (maxBodyBytes: number) => 6 * maxBodyBytes + 2048

// --- Parameters ---

/** `channel=a&channel=b`: the channels to read (none: every channel). */
export const ChannelsParam = Schema.transform(
  Schema.Union(
    Channel,
    Schema.Array(Channel).pipe(
      Schema.maxItems(maxChannelsPerRequest, { message: () => `at most ${maxChannelsPerRequest} channels may be named at once` })
    )
  ).annotations({ description: `A channel to read; repeat it for several (at most ${maxChannelsPerRequest}). None: every channel` }),
  Schema.Union(Schema.Literal("all"), Schema.NonEmptyArray(Schema.typeSchema(Channel))),
  {
    strict: true,
    decode: (named): Channels =>
      typeof named === "string" ? [named] : named.length === 0 ? "all" : [named[0]!, ...named.slice(1)],
    encode: (channels) => (channels === "all" ? [] : channels)
  }
)

const channelParam = Schema.optionalWith(ChannelsParam, { default: () => "all" as const })

const accessToken = Schema.optional(
  Schema.String.annotations({
    description: "The last resort for clients that can neither set Authorization nor send the pollcast_token cookie"
  })
)

export const maxPageSize = 500
export const defaultPageSize = 100

const PageSize = Schema.NumberFromString.pipe(
  Schema.int(),
  Schema.between(1, maxPageSize),
  Schema.annotations({
    message: () => ({ message: `must be a whole number from 1 to ${maxPageSize}`, override: true }),
    description: `Messages per page, 1 to ${maxPageSize}`,
    default: defaultPageSize
  })
)

export const HistoryParams = Schema.Struct({
  channel: channelParam,
  after: Schema.optional(MessageId.annotations({ description: "The messages after this id, oldest first (a forward page)" })),
  before: Schema.optional(MessageId.annotations({ description: "The messages just before this id (not with after)" })),
  limit: Schema.optionalWith(PageSize, { default: () => defaultPageSize }),
  access_token: accessToken
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

export const PositionParams = Schema.Struct({
  channel: channelParam,
  access_token: accessToken
})

export const PositionBody = Schema.Struct({
  position: Position
}).annotations({ identifier: "Position" })

/** Where a stream resumes from; empty is taken as not given, as EventSource clients may send it. */
const resumeFrom = (description: string) => Schema.Union(Schema.Literal(""), Position).annotations({ description })

export const EventsParams = Schema.Struct({
  channel: channelParam,
  lastEventId: Schema.optional(
    resumeFrom(
      "For a first connection that cannot set the Last-Event-ID header (EventSource); the header wins. " +
        "A message id, or a position from pollcast_position() or GET /position; empty: none"
    )
  ),
  access_token: accessToken
})

export const EventsHeaders = Schema.Struct({
  "last-event-id": Schema.optional(
    resumeFrom(
      "The id of the last message received: the stream replays what follows it (or a position from " +
        "pollcast_position() or GET /position); empty: none"
    )
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

export const Liveness = Schema.Struct({ status: Schema.Literal("ok") }).annotations({ identifier: "Liveness" })

export const RestartNeeded = Schema.Struct({
  status: Schema.Literal("restart needed"),
  reason: Schema.String
}).annotations(HttpApiSchema.annotations({ status: 503, identifier: "RestartNeeded" }))

export const Readiness = Schema.Struct({
  status: Schema.Literal("ready", "unavailable"),
  database: Schema.Literal("reachable", "unreachable"),
  poller: Schema.Literal("polling", "overdue"),
  lastPollMillisAgo: Schema.Number,
  writes: Schema.Literal("succeeding", "failing"),
  wakeup: Schema.Literal("disabled", "connecting", "listening", "reconnecting")
}).annotations({ identifier: "Readiness" })

export const Unready = Readiness.annotations(HttpApiSchema.annotations({ status: 503, identifier: "Unready" }))

// --- Endpoints ---

/** What reading channels may meet: no usable token, one that may not read them, the database out. */
const reading = <Name extends string, Method extends HttpMethod.HttpMethod>(endpoint: HttpApiEndpoint.HttpApiEndpoint<Name, Method>) =>
  endpoint.addError(errors.Unauthorized).addError(errors.Forbidden).addError(errors.ServiceUnavailable)

const publishDescription =
  "Stores the message and answers it as stored. With an access token, `author` is the token's name, whatever the body says."

const historyDescription =
  "Only final messages: exactly those a subscriber has been or is about to be sent. With neither `after` nor `before`, the newest page."

const positionDescription =
  "The position of a snapshot taken now (pollcast_position()): /events from it delivers exactly the messages " +
  "that snapshot did not see. Inside a transaction of your own, SELECT pollcast_position() gives the one " +
  "matching what that transaction read. `channel`: the channels you will follow (checked against the token)."

/** POST and GET /messages, GET /position; `maxBodyBytes` is MAX_BODY_BYTES, which bounds a message's body. */
const messagesGroup = (maxBodyBytes: number) =>
  HttpApiGroup.make("messages")
    .add(
      HttpApiEndpoint.post("publish", "/messages")
        .setPayload(NewMessage(maxBodyBytes))
        .addSuccess(Message, { status: 201 })
        .addError(errors.Unauthorized)
        .addError(errors.Forbidden)
        .addError(errors.PayloadTooLarge)
        .addError(errors.UnsupportedMediaType)
        .addError(errors.TooManyRequests)
        .addError(errors.ServiceUnavailable)
        .annotateContext(OpenApi.annotations({ summary: "Publish a message", description: publishDescription }))
    )
    .add(
      reading(HttpApiEndpoint.get("history", "/messages")).setUrlParams(HistoryParams).addSuccess(HistoryPage)
        .annotateContext(OpenApi.annotations({ summary: "Read stored messages, a page at a time", description: historyDescription }))
    )
    .add(
      reading(HttpApiEndpoint.get("position", "/position")).setUrlParams(PositionParams).addSuccess(PositionBody)
        .annotateContext(OpenApi.annotations({ summary: "Where the database is now, to follow from", description: positionDescription }))
    )
    .addError(errors.OriginNotAllowed)
    .annotate(OpenApi.Description, "Publishing, history and positions")

/** `GET /events`, served by its own handler beside the router. */
export const eventsEndpoint = HttpApiEndpoint.get("events", "/events")

const eventsGroup = HttpApiGroup.make("events")
  .add(
    reading(eventsEndpoint)
      .setUrlParams(EventsParams)
      .setHeaders(EventsHeaders)
      .addSuccess(HttpApiSchema.Text({ contentType: "text/event-stream" }).annotations({ description: eventFormat }))
      .addError(errors.TooManyRequests)
      .annotate(OpenApi.Summary, "Follow channels live (Server-Sent Events)")
      .annotate(OpenApi.Description, eventFormat)
  )
  .addError(errors.OriginNotAllowed)
  .annotate(OpenApi.Description, "The live stream")

const operationsGroup = HttpApiGroup.make("operations")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(Liveness)
      .addError(RestartNeeded)
      .annotate(OpenApi.Summary, "The process answers, and can go on without a restart")
  )
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(Readiness)
      .addError(Unready)
      .annotate(
        OpenApi.Summary,
        "The database answers, the poller has polled within 3 × POLL_INTERVAL + 5 s, and writes are not failing"
      )
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" }).annotations({
        description: "Every metric, in Prometheus' text exposition format"
      }))
      .addError(errors.Unauthorized)
      .addError(errors.Forbidden)
      .addError(errors.ServiceUnavailable)
      .annotate(OpenApi.Summary, "Metrics for Prometheus (the admin claim, once access control is on)")
  )
  .add(
    HttpApiEndpoint.get("stats", "/stats")
      .addSuccess(Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
        description: "This node's figures as JSON: clients, subscribers, position, polls, wakeup, limits"
      }))
      .addError(errors.Unauthorized)
      .addError(errors.Forbidden)
      .addError(errors.ServiceUnavailable)
      .annotate(OpenApi.Summary, "This node's figures (the admin claim, once access control is on)")
  )
  .annotate(OpenApi.Description, "Health, readiness and figures for operators")

/**
 * A malformed request is answered InvalidRequest (src/Http/Answer.ts), never the HttpApiDecodeError
 * that HttpApi declares for every endpoint, so the document leaves that one out: its schemas, and
 * its place among each endpoint's 400 answers. Done on the document's structure, by the
 * component names the decode error's own JSON schema defines.
 */
const decodeErrorSchemas = new Set(Object.keys(JSONSchema.make(HttpApiError.HttpApiDecodeError).$defs ?? {}))
const isDecodeError = (schema: JsonSchema.JsonSchema) =>
  "$ref" in schema && decodeErrorSchemas.has(schema.$ref.slice(schema.$ref.lastIndexOf("/") + 1))

/** A 400 answer's schema without the decode error; undefined if nothing else is left. */
const withoutDecodeErrorIn = (schema: JsonSchema.JsonSchema): JsonSchema.JsonSchema | undefined => {
  if (isDecodeError(schema)) return undefined
  if (!("anyOf" in schema) || "$id" in schema || "$comment" in schema) return schema
  const rest = schema.anyOf.filter((alternative) => !isDecodeError(alternative))
  return rest.length === 1 ? rest[0] : { ...schema, anyOf: rest }
}

const invalidRequestDescription = Option.getOrElse(AST.getDescriptionAnnotation(errors.InvalidRequest.ast), () => "")

const withoutDecodeError = (spec: OpenApi.OpenAPISpec): OpenApi.OpenAPISpec => {
  for (const item of Object.values(spec.paths)) {
    for (const operation of Object.values(item)) {
      const answer = operation.responses[400]
      const media = answer?.content?.["application/json"]
      if (answer === undefined || media === undefined) continue
      const rest = withoutDecodeErrorIn(media.schema)
      if (rest === undefined) {
        delete operation.responses[400]
      } else {
        media.schema = rest
        answer.description = invalidRequestDescription
      }
    }
  }
  for (const name of decodeErrorSchemas) delete spec.components.schemas[name]
  return spec
}

const describe = <Id extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(api: HttpApi.HttpApi<Id, Groups, E, R>) =>
  api
    .annotate(OpenApi.Title, "pollcast")
    .annotate(OpenApi.Version, "1")
    .annotate(
      OpenApi.Description,
      "A real-time message service: messages stored in PostgreSQL, pushed to clients over Server-Sent Events. " +
        "Once access control is on, requests carry a JWT as `Authorization: Bearer`, the `pollcast_token` cookie, " +
        "or (last resort) `access_token`."
    )

/** What the router serves from the declaration: every endpoint but `GET /events`. */
export const routed = (maxBodyBytes: number) =>
  HttpApi.make("pollcast")
    .add(messagesGroup(maxBodyBytes))
    .add(operationsGroup)
    .addError(errors.InvalidRequest)
    .addError(errors.NotFound)

/** The whole API's declaration; `maxBodyBytes` is MAX_BODY_BYTES, which bounds a message's body. */
export const make = (maxBodyBytes: number) => describe(routed(maxBodyBytes).add(eventsGroup))

export type Api = ReturnType<typeof make>
export type Routed = ReturnType<typeof routed>

/** The OpenAPI document of the whole API, as it is served at /openapi.json. */
export const openApi = (maxBodyBytes: number): OpenApi.OpenAPISpec => withoutDecodeError(OpenApi.fromApi(make(maxBodyBytes)))

/** Every path the API declares. */
export const paths = (api: Api): ReadonlyArray<string> => {
  const found = new Set<string>()
  HttpApi.reflect(api, { onGroup: () => undefined, onEndpoint: ({ endpoint }) => found.add(endpoint.path) })
  return [...found]
}

/**
 * The routes browsers may call from other pages' origins (CORS_ORIGINS), with their methods: those
 * of the groups that declare OriginNotAllowed.
 */
const originNotAllowed: OriginNotAllowed["_tag"] = "OriginNotAllowed"

export const crossOriginRoutes = (api: Api): ReadonlyMap<string, ReadonlyArray<string>> => {
  const routes = new Map<string, Array<string>>()
  HttpApi.reflect(api, {
    onGroup: () => undefined,
    onEndpoint: ({ endpoint, group }) => {
      const errors = new Set<Schema.Schema.Any>()
      HttpApiSchema.deunionize(errors, group.errorSchema)
      const declares = [...errors].some((error) => Option.contains(AST.getIdentifierAnnotation(error.ast), originNotAllowed))
      if (!declares) return
      const methods = routes.get(endpoint.path) ?? []
      routes.set(endpoint.path, [...methods, endpoint.method].sort())
    }
  })
  return routes
}
