/**
 * The rules every request is held to, in one place for the HttpRouter app (Http.ts, Messages.ts,
 * Health.ts) and the `/events` handler beside it (Events.ts), decided from the request's parts
 * (method, URL, headers, peer address):
 *
 * - Hosts: a browser's request must name the node by an IP address, localhost, this machine's name
 *   or a name in ALLOWED_HOSTS. Otherwise a page at a name its owner re-points at this node (DNS
 *   rebinding) is same-origin with it and passes the origin rules. Requests from programs (no
 *   Origin, no Sec-Fetch-Mode: curl, probes, other services) are not held to it.
 * - Origins: a browser may call /messages and /events from the node's own origin or one listed in
 *   CORS_ORIGINS; anything else is refused, which with `content-type: application/json` required
 *   of POST closes cross-site request forgery (a form or `text/plain` fetch sends no preflight).
 * - Who: the request's token (Authorization: Bearer, then the cookie, then `access_token`) or its
 *   absence gives a Principal (Access.ts), checked against the channels asked for: no usable token
 *   401, a token without the right 403.
 * - Limits: a token bucket per publisher (token subject, else client address), and caps on open
 *   event streams per client address and per node; a stream ends when its token expires.
 *
 * A token is checked once per request or event stream, never per message delivered.
 */
import { Cookies } from "@effect/platform"
import { Clock, Context, Effect, Layer, Scope } from "effect"
import * as Net from "node:net"
import * as Os from "node:os"
import { Access, layer as AccessLayer, type Principal } from "./Tokens.js"
import { AppConfig } from "../Config.js"
import { RateLimiter, StreamCounts } from "./Limits.js"
import { maxAuthorCharacters, type NewMessage } from "../Domain/Message.js"
import type { Channels } from "../Domain/Channels.js"
import { clientAddress, forwardedHost, limitKey, type Peer } from "../Http/ClientAddress.js"
import {
  type Answer,
  Forbidden,
  OriginNotAllowed,
  ServiceUnavailable,
  TooManyRequests,
  Unauthorized,
  UnsupportedMediaType
} from "../Http/HttpErrors.js"

/** What the policy reads of a request: a Node IncomingMessage has all of it. */
export interface RequestParts extends Peer {
  readonly method?: string | undefined
  readonly url?: string | undefined
}

/** What the origin rules make of a request: headers for its answer, and the answer itself if it is decided. */
export interface Screening {
  readonly headers: Readonly<Record<string, string>>
  readonly answer: Answer | undefined
}

export const tokenCookie = "pollcast_token"

/** Publishers tracked by the rate limiter at most (a few MB); see RateLimiter. */
const maxTrackedPublishers = 100_000

/** Retry-After for a stream refused by a cap: time for others to close, short enough to come back soon. */
const streamRetryAfterSeconds = 5

// Node's timers hold at most 2^31 - 1 ms (24.8 days); a later expiry is reached in steps.
const maxTimerDelay = 2 ** 31 - 1

/**
 * An admitted event stream: its place in the counts and the timer that ends it when its token
 * expires, both freed by `release` when it closes. One small object and one finalizer, with no
 * closure over the admission's context: thousands are alive at once (a closure and a finalizer for
 * each of the two measured about 0.4 KB more per stream with a token).
 */
class Admission {
  private timer: ReturnType<typeof setTimeout> | undefined = undefined

  constructor(private readonly streams: StreamCounts, private readonly client: string) {}

  /** Calls `expire` at epoch millisecond `at`. */
  expireAt(at: number, expire: () => void) {
    const left = at - Date.now()
    this.timer = left > maxTimerDelay
      ? setTimeout(Admission.rearm, maxTimerDelay, this, at, expire)
      : setTimeout(expire, Math.max(0, left))
  }

  private static rearm(admission: Admission, at: number, expire: () => void) {
    admission.expireAt(at, expire)
  }

  release() {
    this.streams.remove(this.client)
    if (this.timer !== undefined) clearTimeout(this.timer)
  }
}

/** Releases `admission` when the scope closes (a plain finalizer: acquireRelease keeps a copy of the fiber's references). */
const releasedWithScope = (admission: Admission) =>
  Effect.scopeWith((scope) => Scope.addFinalizer(scope, Effect.sync(() => admission.release())))

const header = (request: RequestParts, name: string): string | undefined => {
  const value = request.headers[name]
  return value === undefined ? undefined : typeof value === "string" ? value : value[0]
}

const pathOf = (url: string | undefined) => {
  const path = url ?? "/"
  const query = path.indexOf("?")
  return query === -1 ? path : path.slice(0, query)
}

const bearer = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i

type Credentials = { readonly _tag: "None" } | { readonly _tag: "Token"; readonly token: string } | {
  readonly _tag: "Malformed"
}

/** The request's token: from Authorization, else the cookie, else the `access_token` query parameter. */
export const credentials = (request: RequestParts): Credentials => {
  const authorization = header(request, "authorization")
  if (authorization !== undefined && /^bearer\b/i.test(authorization)) {
    const match = bearer.exec(authorization)
    return match === null ? { _tag: "Malformed" } : { _tag: "Token", token: match[1]! }
  }
  const cookie = header(request, "cookie")
  if (cookie !== undefined) {
    const token = Cookies.parseHeader(cookie)[tokenCookie]
    if (token !== undefined && token !== "") return { _tag: "Token", token }
  }
  const url = request.url ?? ""
  if (url.includes("access_token=")) {
    const token = new URL(url, "http://pollcast").searchParams.get("access_token")
    if (token !== null && token !== "") return { _tag: "Token", token }
  }
  return { _tag: "None" }
}

/** Whether a URL carries a token in its query (such URLs are kept out of traces). */
export const hasTokenInQuery = (url: string) => url.includes("access_token=")

const isJson = (contentType: string | undefined) =>
  contentType !== undefined && contentType.split(";")[0]!.trim().toLowerCase() === "application/json"

export class RequestPolicy extends Context.Tag("pollcast/RequestPolicy")<RequestPolicy, {
  /** The origin rules for /messages and /events: CORS headers, a preflight's answer, or a refusal. */
  readonly screen: (request: RequestParts) => Screening
  /** Who publishes, if they may publish at all now: JSON body, a usable token, within the rate. */
  readonly publisher: (
    request: RequestParts
  ) => Effect.Effect<Principal, UnsupportedMediaType | Unauthorized | Forbidden | TooManyRequests | ServiceUnavailable>
  /** The message as it is to be stored, if `publisher` may publish it (the author comes from a token). */
  readonly authorizePublish: (publisher: Principal, message: NewMessage) => Effect.Effect<NewMessage, Unauthorized | Forbidden>
  /** Who reads, if they may read `channels`. */
  readonly reader: (
    request: RequestParts,
    channels: Channels
  ) => Effect.Effect<Principal, Unauthorized | Forbidden | ServiceUnavailable>
  /**
   * Admits an event stream of `channels` until the scope closes: the reader's rights, then the
   * stream caps. `expire` is called when the reader's token expires.
   */
  readonly admitStream: (
    request: RequestParts,
    channels: Channels,
    expire: () => void
  ) => Effect.Effect<void, Unauthorized | Forbidden | TooManyRequests | ServiceUnavailable, Scope.Scope>
  /** Succeeds if the request may see the service's internals (/stats). */
  readonly operator: (request: RequestParts) => Effect.Effect<void, Unauthorized | Forbidden | ServiceUnavailable>
  /** Sizes of the structures the limits keep, for /stats. */
  readonly figures: Effect.Effect<{
    readonly access: "tokens" | "open"
    readonly publishersTracked: number
    readonly streamClients: number
    readonly streams: number
  }>
}>() {}

export const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const access = yield* Access
  const { corsOrigins, limits, trustProxy } = config
  const anyOrigin = corsOrigins.includes("*")
  const allowedOrigins = new Set(corsOrigins)
  const rateLimiter = limits.publishRate > 0
    ? new RateLimiter(limits.publishRate, limits.publishBurst, maxTrackedPublishers)
    : undefined
  const streams = new StreamCounts(limits.maxStreamsPerClient, limits.maxStreams)
  let unavailableLoggedAt = -Infinity

  // --- Origins ---

  const isOwnOrigin = (request: RequestParts, origin: string) => {
    // Browsers say it themselves (Sec-Fetch-Site, which pages cannot set); older ones are
    // judged by the Origin's host against the host they sent the request to.
    const site = header(request, "sec-fetch-site")
    if (site !== undefined) return site === "same-origin" || site === "none"
    let host: string
    try {
      host = new URL(origin).host
    } catch {
      return false
    }
    return host === header(request, "host") || (trustProxy > 0 && host === forwardedHost(request))
  }

  const corsHeaders = (origin: string) => ({
    vary: "Origin",
    "access-control-allow-origin": origin,
    "access-control-allow-credentials": "true",
    "access-control-expose-headers": "retry-after, www-authenticate"
  })

  const noHeaders: Screening = { headers: {}, answer: undefined }

  // --- Hosts ---

  const anyHost = config.allowedHosts.includes("*")
  const exactHosts = new Set([...config.allowedHosts.map((name) => name.toLowerCase()), "localhost", Os.hostname().toLowerCase()])
  const hostSuffixes = [".localhost", ...config.allowedHosts.filter((name) => name.startsWith("*.")).map((name) => name.slice(1).toLowerCase())]

  const isAllowedHost = (host: string) => {
    let name: string
    try {
      name = new URL(`http://${host}`).hostname.toLowerCase()
    } catch {
      return false
    }
    const bare = name.startsWith("[") ? name.slice(1, -1) : name
    return Net.isIP(bare) !== 0 || exactHosts.has(bare) || hostSuffixes.some((suffix) => bare.endsWith(suffix))
  }

  const hostRefusal = (request: RequestParts): Screening | undefined => {
    if (anyHost || (header(request, "origin") === undefined && header(request, "sec-fetch-mode") === undefined)) return undefined
    const host = (trustProxy > 0 ? forwardedHost(request) : undefined) ?? header(request, "host") ?? ""
    if (isAllowedHost(host)) return undefined
    return {
      headers: {},
      answer: new Forbidden({
        field: "Host",
        message: `This node is not served as ${JSON.stringify(host.slice(0, 200))} to browsers; add the name to ALLOWED_HOSTS`
      }).answer
    }
  }

  const screen = (request: RequestParts): Screening => {
    const refused = hostRefusal(request)
    if (refused !== undefined) return refused
    const path = pathOf(request.url)
    if (path !== "/messages" && path !== "/events" && path !== "/position") return noHeaders
    const readOnly = path !== "/messages"
    const origin = header(request, "origin")
    const preflight = request.method === "OPTIONS"
    if (origin !== undefined && (anyOrigin || allowedOrigins.has(origin))) {
      const headers = corsHeaders(origin)
      if (!preflight) return { headers, answer: undefined }
      return {
        headers: {},
        answer: {
          status: 204,
          headers: {
            ...headers,
            "access-control-allow-methods": readOnly ? "GET" : "GET, POST",
            "access-control-allow-headers": "authorization, content-type, last-event-id",
            "access-control-max-age": "600"
          },
          body: undefined
        }
      }
    }
    if (origin !== undefined && !isOwnOrigin(request, origin)) {
      return { headers: {}, answer: new OriginNotAllowed({ origin: origin.slice(0, 200) }).answer }
    }
    // Nothing to add to a same-origin answer: a header set here would also make Node keep a copy
    // of all the answer's headers for as long as an event stream lasts (about 0.5 KB).
    return preflight
      ? { headers: {}, answer: { status: 204, headers: { allow: readOnly ? "GET, OPTIONS" : "GET, POST, OPTIONS" }, body: undefined } }
      : noHeaders
  }

  // --- Who ---

  const unavailable = (error: { readonly message: string }) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      if (now - unavailableLoggedAt > 10_000) {
        unavailableLoggedAt = now
        yield* Effect.logWarning(error.message)
      }
      return yield* new ServiceUnavailable({ message: "Access tokens cannot be checked right now; try again shortly", retryAfter: 5 })
    })

  const principal = (request: RequestParts): Effect.Effect<Principal, Unauthorized | ServiceUnavailable> => {
    if (!access.enforced) return Effect.succeed(access.anonymous)
    const found = credentials(request)
    switch (found._tag) {
      case "None":
        return Effect.succeed(access.anonymous)
      case "Malformed":
        return new Unauthorized({ invalidToken: true, message: "The Authorization header must be: Bearer <token>" })
      case "Token":
        return access.verify(found.token).pipe(
          Effect.catchTags({
            InvalidToken: (error) => new Unauthorized({ invalidToken: true, message: error.message }),
            VerificationUnavailable: unavailable
          })
        )
    }
  }

  const refuse = (who: Principal, action: string, what: string): Effect.Effect<never, Unauthorized | Forbidden> =>
    who.subject === undefined
      ? new Unauthorized({ invalidToken: false, message: `An access token is needed to ${action} ${what}` })
      : new Forbidden({ field: "channel", message: `This token may not ${action} ${what}` })

  const reader = (request: RequestParts, channels: Channels) =>
    Effect.flatMap(principal(request), (who): Effect.Effect<Principal, Unauthorized | Forbidden> => {
      if (channels === "all") {
        return who.subscribe.everything
          ? Effect.succeed(who)
          : refuse(who, "read", "every channel: name the channels (?channel=), or use a token that may subscribe to *")
      }
      const refused = channels.find((channel) => !who.subscribe.allows(channel))
      return refused === undefined ? Effect.succeed(who) : refuse(who, "read", `channel "${refused}"`)
    })

  // --- Publishing ---

  const publisher = (request: RequestParts) =>
    Effect.gen(function*() {
      const contentType = header(request, "content-type")
      if (!isJson(contentType)) return yield* new UnsupportedMediaType({ contentType })
      const who = yield* principal(request)
      if (who.publish.isEmpty) return yield* refuse(who, "publish to", "any channel")
      if (rateLimiter !== undefined) {
        const identity = who.subject !== undefined ? `sub:${who.subject}` : limitKey(clientAddress(request, trustProxy))
        const wait = rateLimiter.take(identity, yield* Clock.currentTimeMillis)
        if (wait > 0) {
          const seconds = Math.max(1, Math.ceil(wait / 1000))
          return yield* new TooManyRequests({
            retryAfter: seconds,
            message: `Too many messages: at most ${limits.publishBurst} at once, then ${limits.publishRate} a second; try again in ${seconds} s`
          })
        }
      }
      return who
    })

  const unverifiedMark = "~"

  const authorizePublish = (who: Principal, message: NewMessage) => {
    if (!who.publish.allows(message.channel)) return refuse(who, "publish to", `channel "${message.channel}"`)
    if (who.subject === undefined) {
      // With access control on, a name nobody vouched for is marked so (`~ada`), so that no reader
      // takes it for the token holder ada's; with it off, no name is vouched for, and none marked.
      if (!access.enforced) return Effect.succeed(message)
      return Effect.succeed({ ...message, author: `${unverifiedMark}${Array.from(message.author).slice(0, maxAuthorCharacters - 1).join("")}` })
    }
    // A token holder posts under the token's name, whatever the body says.
    return who.author === undefined
      ? new Forbidden({
        message: "This token names no author: its sub is longer than 64 characters, so give it a pollcast.author claim"
      })
      : Effect.succeed({ ...message, author: who.author })
  }

  // --- Streams ---

  const admitStream = (request: RequestParts, channels: Channels, expire: () => void) =>
    Effect.gen(function*() {
      const who = yield* reader(request, channels)
      const client = limitKey(clientAddress(request, trustProxy))
      const refusal = streams.add(client)
      if (refusal === "node") {
        return yield* new ServiceUnavailable({
          retryAfter: streamRetryAfterSeconds,
          message: `This node holds as many event streams as it may (MAX_STREAMS ${limits.maxStreams}); try again shortly`
        })
      }
      if (refusal === "client") {
        return yield* new TooManyRequests({
          retryAfter: streamRetryAfterSeconds,
          message: `At most ${limits.maxStreamsPerClient} event streams may be open from one address (MAX_STREAMS_PER_CLIENT)`
        })
      }
      // A plain timer: an idle stream must not cost a fiber.
      const admission = new Admission(streams, client)
      if (who.expiresAt !== undefined) admission.expireAt(who.expiresAt, expire)
      yield* releasedWithScope(admission)
    })

  const operator = (request: RequestParts) =>
    Effect.flatMap(principal(request), (who): Effect.Effect<void, Unauthorized | Forbidden> =>
      who.admin
        ? Effect.void
        : who.subject === undefined
        ? new Unauthorized({ invalidToken: false, message: "An access token with the admin claim is needed" })
        : new Forbidden({ message: "This token has no admin claim" }))

  return RequestPolicy.of({
    screen,
    publisher,
    authorizePublish,
    reader,
    admitStream,
    operator,
    figures: Effect.sync(() => ({
      access: access.enforced ? "tokens" as const : "open" as const,
      publishersTracked: rateLimiter?.size ?? 0,
      streamClients: streams.clients,
      streams: streams.streams
    }))
  })
})

/** The policy, with the Access service it checks tokens with. */
export const layer = Layer.effect(RequestPolicy, make).pipe(Layer.provide(AccessLayer))
