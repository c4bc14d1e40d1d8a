/**
 * A typed client for pollcast, for TypeScript programs on Effect: the JSON endpoints through
 * HttpApiClient, derived from the same declaration the server's document comes from (src/Api.ts),
 * and `events`, a Stream of the messages of some channels that survives any disconnection.
 *
 *     const client = yield* PollcastClient.make({ baseUrl: "http://localhost:8080" })
 *     yield* client.publish({ channel: "general", body: "Hello" })
 *     yield* client.events({ channels: ["general"] }).pipe(Stream.runForEach(Console.log))
 *
 * Needs an HttpClient (FetchHttpClient.layer, or NodeHttpClient's).
 *
 * `events` reads the stream with @effect/experimental's SSE parser. After any drop — the node
 * restarting, the network, the server cutting a slow reader off, a token expiring, 429 or 503 —
 * it reconnects with backoff (100 ms doubling to 5 s, with jitter; from the start again once
 * connected) and `Last-Event-ID`, so the server replays exactly what was missed. It never yields
 * a message at or before one it has yielded (ids sort in delivery order). A `reset` event — the
 * server never issued the id resumed from, or retention removed what followed it — moves the
 * stream to the position the server names and continues from there; `onReset` is told (by
 * default a warning is logged). A stream silent for `idleTimeout` (no heartbeat either) is taken
 * for dead. A refusal that waiting cannot cure (400, 401, 403) ends the stream with EventsRefused.
 */
import * as Sse from "@effect/experimental/Sse"
import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { Data, type Duration, Effect, Option, Schedule, Schema, Stream } from "effect"
import * as Api from "../Api.js"
import * as TabHub from "./TabHub.js"
import { type Channel, maxBodyBytesLimit, Message, MessageId, NewMessage } from "../Domain/Message.js"

export interface ClientOptions {
  /** Where the service is, e.g. `http://localhost:8080`. */
  readonly baseUrl: string
  /** An access token, asked for before each request (so that a fresh one can be handed out). */
  readonly token?: Effect.Effect<string | undefined> | undefined
}

export interface EventsOptions {
  /** The channels to follow; none: every channel. */
  readonly channels?: ReadonlyArray<Channel | string> | undefined
  /**
   * Resume after this message (from a history page's `lastEventId`, say), or from a position
   * (`position()`, or `pollcast_position()` in your own transaction); none: from now.
   */
  readonly lastEventId?: MessageId | string | undefined
  /** Told when the server sends a `reset` event (by default: a warning in the log). */
  readonly onReset?: ((reset: Reset) => Effect.Effect<void>) | undefined
  /**
   * A stream that sends nothing, not even a heartbeat, for this long is taken for dead and opened
   * again (default 45 seconds: three of the server's default HEARTBEAT_INTERVAL).
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /**
   * In a browser, share one connection with every other `events` stream of every tab of this
   * origin and token (default: where Web Locks and BroadcastChannel exist; see TabHub). Over
   * HTTP/1.1 a browser opens at most six connections to an origin, across all its tabs.
   */
  readonly shareTabs?: boolean | undefined
}

/** The server could not resume from the id asked for, and the stream continues after `lastEventId`. */
export class Reset extends Schema.Class<Reset>("Reset")({
  reason: Schema.Literal("ahead", "expired"),
  lastEventId: MessageId
}) {}

/** The server refused the stream for a reason that waiting does not cure (400, 401, 403). */
export class EventsRefused extends Data.TaggedError("EventsRefused")<{
  readonly status: number
  readonly body: string
}> {
  override get message() {
    return `GET /events was refused with ${this.status}: ${this.body}`
  }
}

/** The stream ended or could not be opened; it is opened again. */
class Dropped extends Data.TaggedError("Dropped")<{ readonly reason: string }> {}

/** A message to publish; channel and author may be left out. */
export interface NewMessageInput {
  readonly channel?: string | undefined
  readonly author?: string | undefined
  readonly body: string
}

/** Which page of history to read (see GET /messages). */
export interface HistoryInput {
  readonly channel?: string | ReadonlyArray<string> | undefined
  readonly after?: string | undefined
  readonly before?: string | undefined
  readonly limit?: number | undefined
}

/** Large enough for any node's MAX_BODY_BYTES: the server decides what it accepts. */
const largestBody = maxBodyBytesLimit
const clientApi = Api.make(largestBody)
// Plain strings are checked by the declaration's schemas (a ParseError) before anything is sent.
const checkMessage = Schema.decodeUnknown(NewMessage(largestBody))
const checkHistory = (params: HistoryInput) =>
  Schema.decodeUnknown(Api.HistoryParams)({ ...params, limit: params.limit === undefined ? undefined : String(params.limit) })
const checkPosition = Schema.decodeUnknown(Api.PositionParams)

const reconnection = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.jittered,
  Schedule.whileInput((error: Dropped | EventsRefused) => error._tag === "Dropped")
)

const decodeMessage = Schema.decodeUnknown(Schema.parseJson(Message))
const decodeReset = Schema.decodeUnknown(Schema.parseJson(Reset))
const retryable = new Set([408, 425, 429, 500, 502, 503, 504])

export const make = (options: ClientOptions) =>
  Effect.gen(function*() {
    const token = options.token ?? Effect.succeed(undefined)
    const httpClient = (yield* HttpClient.HttpClient).pipe(
      HttpClient.mapRequestEffect((request) =>
        Effect.map(token, (bearer) => (bearer === undefined ? request : HttpClientRequest.bearerToken(request, bearer)))
      )
    )
    const api = yield* HttpApiClient.makeWith(clientApi, { httpClient, baseUrl: options.baseUrl })

    const directEvents = ({ channels = [], idleTimeout = "45 seconds", lastEventId, onReset }: EventsOptions = {}): Stream.Stream<
      Message,
      EventsRefused
    > => {
      // What Last-Event-ID carries (the server's SSE id: after a position, a message id followed by
      // the snapshot), and the newest message yielded, which nothing yielded may come before.
      let cursor = Option.fromNullable(lastEventId)
      let newest = Option.map(cursor, (id) => id.split("@")[0]!)
      const tellReset = onReset ??
        ((reset: Reset) =>
          Effect.logWarning(
            `pollcast reset the event stream (${reset.reason}): continuing after ${reset.lastEventId}`
          ))

      const handle = (event: Sse.Event): Effect.Effect<Option.Option<Message>> => {
        if (event.event === "reset") {
          return decodeReset(event.data).pipe(
            Effect.tap((reset) => {
              cursor = Option.some(reset.lastEventId)
              newest = Option.some(reset.lastEventId)
              return tellReset(reset)
            }),
            Effect.as(Option.none<Message>()),
            Effect.orDie
          )
        }
        if (event.event !== "message") return Effect.succeed(Option.none())
        return decodeMessage(event.data).pipe(
          Effect.map((message) => {
            if (Option.isSome(newest) && message.id <= newest.value) return Option.none()
            newest = Option.some(message.id)
            cursor = Option.some(event.id ?? message.id)
            return Option.some(message)
          }),
          Effect.orDie
        )
      }

      const connection = Effect.gen(function*() {
        const url = new URL(Api.eventsEndpoint.path, options.baseUrl)
        for (const channel of channels) url.searchParams.append("channel", channel)
        const request = HttpClientRequest.get(url).pipe(
          HttpClientRequest.setHeader("accept", "text/event-stream"),
          Option.match(cursor, {
            onNone: () => (request: HttpClientRequest.HttpClientRequest) => request,
            onSome: (id) => HttpClientRequest.setHeader("last-event-id", id)
          })
        )
        const response = yield* httpClient.execute(request).pipe(
          Effect.mapError((error) => new Dropped({ reason: error.message }))
        )
        if (response.status !== 200) {
          const body = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
          return yield* retryable.has(response.status)
            ? new Dropped({ reason: `${response.status}: ${body}` })
            : new EventsRefused({ status: response.status, body })
        }
        // The parser, not Sse.makeChannel: that one takes a `retry:` field as an order to start over.
        const parsed: Array<Sse.Event> = []
        const parser = Sse.makeParser((event) => {
          if (event._tag === "Event") parsed.push(event)
        })
        return response.stream.pipe(
          Stream.mapError((error) => new Dropped({ reason: error.message })),
          // A connection that died without a word (a network path gone) would otherwise wait for ever.
          Stream.timeoutFail(() => new Dropped({ reason: "nothing received, not even a heartbeat" }), idleTimeout),
          Stream.decodeText(),
          Stream.mapConcatEffect((text) => {
            const error = parser.feed(text)
            return error === undefined ? Effect.succeed(parsed.splice(0)) : new Dropped({ reason: error.message })
          }),
          Stream.mapEffect(handle),
          Stream.filterMap((message) => message),
          // The server never ends a healthy stream: an end is a drop like any other.
          Stream.concat(Stream.fail(new Dropped({ reason: "the stream ended" })))
        )
      })

      return Stream.unwrapScoped(connection).pipe(
        Stream.tapError((error) =>
          error._tag === "Dropped" ? Effect.logDebug(`pollcast events: reconnecting (${error.reason})`) : Effect.void
        ),
        Stream.retry(reconnection),
        // The schedule retries a drop for ever: only EventsRefused gets past it.
        Stream.catchAll((error) =>
          error._tag === "Dropped" ? Stream.dieMessage(`Gave up reconnecting: ${error.reason}`) : Stream.fail(error)
        )
      )
    }

    // One hub per group of tabs (the same token, or none), made when first used.
    const hubs = new Map<string, TabHub.TabHub<EventsRefused>>()
    const hubOf = (group: string, idleTimeout: Duration.DurationInput | undefined) => {
      const found = hubs.get(group)
      if (found !== undefined) return found
      const hub = TabHub.make<EventsRefused>(group, {
        open: (channels, lastEventId, onReset) =>
          directEvents({ channels, lastEventId, idleTimeout, onReset: (reset) => onReset(reset) }),
        refusal: (error) => ({ status: error.status, body: error.body })
      })
      hubs.set(group, hub)
      return hub
    }

    const events = (eventsOptions: EventsOptions = {}): Stream.Stream<Message, EventsRefused> => {
      const { channels = [], lastEventId, onReset } = eventsOptions
      // A position with a snapshot filters per stream: it keeps a stream of its own.
      if (eventsOptions.shareTabs === false || !TabHub.available() || (lastEventId ?? "").includes("@")) {
        return directEvents(eventsOptions)
      }
      const tellReset = onReset ??
        ((reset: Reset) => Effect.logWarning(`pollcast reset the event stream (${reset.reason}): continuing after ${reset.lastEventId}`))
      // A stream joins its tabs' shared connection only once its token is known to read its
      // channels: one it may not read would get the whole shared stream refused.
      const refusedAs = (error: Api.ErrorOf<"Unauthorized" | "Forbidden">) =>
        new EventsRefused({ status: Api.statusOf(error), body: JSON.stringify(Api.encodeError(error)) })
      const mayRead = checkHistory({ channel: channels, limit: 1 }).pipe(
        Effect.flatMap((urlParams) => api.messages.history({ urlParams })),
        Effect.matchEffect({
          onSuccess: () => Effect.void,
          // Anything else (the node unreachable, a malformed channel) the stream itself will meet.
          onFailure: (error) =>
            error._tag === "Unauthorized" || error._tag === "Forbidden" ? Effect.fail(refusedAs(error)) : Effect.void
        })
      )
      return Stream.unwrap(Effect.zipRight(mayRead, Effect.map(Effect.flatMap(token, TabHub.groupOf), (group) =>
        group === undefined
          ? directEvents(eventsOptions)
          : hubOf(group, eventsOptions.idleTimeout).subscribe(
            channels,
            lastEventId,
            (reset) => tellReset(new Reset(reset as Reset)),
            (status, body) => new EventsRefused({ status, body })
          ))))
    }

    return {
      /** POST /messages: stores a message and returns it as stored. */
      publish: (message: NewMessageInput) =>
        Effect.flatMap(checkMessage(message), (payload) => api.messages.publish({ payload })),
      /** GET /messages: a page of stored messages. */
      history: (params: HistoryInput = {}) =>
        Effect.flatMap(checkHistory(params), (urlParams) => api.messages.history({ urlParams })),
      events,
      /**
       * GET /position: where a snapshot taken now has seen up to; `events` from it delivers what
       * it did not see. For `channels` the token may read (none: every channel).
       */
      position: (channels: ReadonlyArray<Channel | string> = []) =>
        Effect.flatMap(
          checkPosition({ channel: channels }),
          (urlParams) => Effect.map(api.messages.position({ urlParams }), (answer) => answer.position)
        ),
      /** Every endpoint of the declaration, as HttpApiClient makes them. */
      api
    }
  })

export type PollcastClient = Effect.Effect.Success<ReturnType<typeof make>>
