/**
 * The rules every request is held to, in one place for the router's endpoints and the `/events`
 * handler beside them, over the request's parts (Request.ts): which pages may call (Origins.ts),
 * who the request speaks for (its credentials, verified by Tokens.ts), what that principal may do
 * (Rights.ts), and how much it may ask (Admission.ts). A token is checked once per request or event
 * stream, never per message delivered.
 */
import { Clock, Context, Effect, Layer, Scope } from "effect"
import type { Channels } from "../Domain/Channels.js"
import { Forbidden, ServiceUnavailable, TooManyRequests, Unauthorized, UnsupportedMediaType } from "../Domain/Errors.js"
import type { NewMessage } from "../Domain/Message.js"
import { AppConfig } from "../Config.js"
import * as Admission from "./Admission.js"
import { credentialsOf } from "./Credentials.js"
import * as Origins from "./Origins.js"
import type { RequestParts } from "./Request.js"
import * as Rights from "./Rights.js"
import { Access, layer as AccessLayer, type Principal } from "./Tokens.js"

/** An admitted event stream: until when its token lets it run (epoch milliseconds; none: for ever). */
export interface Admitted {
  readonly expiresAt: number | undefined
}

const isJson = (contentType: string | undefined) =>
  contentType !== undefined && contentType.split(";")[0]!.trim().toLowerCase() === "application/json"

export class RequestPolicy extends Context.Tag("pollcast/RequestPolicy")<RequestPolicy, {
  /**
   * Which pages may make the request: CORS headers, a preflight's answer, or a refusal; `methods`
   * are its route's if that is one of the API's cross-origin routes.
   */
  readonly screen: (request: RequestParts, methods: ReadonlyArray<string> | undefined) => Origins.Screening
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
  /** Admits an event stream of `channels` until the scope closes: the reader's rights, then the stream caps. */
  readonly admitStream: (
    request: RequestParts,
    channels: Channels
  ) => Effect.Effect<Admitted, Unauthorized | Forbidden | TooManyRequests | ServiceUnavailable, Scope.Scope>
  /** Succeeds if the request may see the service's internals (/stats, /metrics). */
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
  const screen = Origins.make(config)
  const admission = yield* Admission.Admission
  let unavailableLoggedAt = -Infinity

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
    const found = credentialsOf(request)
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

  const reader = (request: RequestParts, channels: Channels) =>
    Effect.flatMap(principal(request), (who) => Rights.read(who, channels))

  const publisher = (request: RequestParts) =>
    Effect.gen(function*() {
      if (!isJson(request.contentType)) return yield* UnsupportedMediaType.of(request.contentType)
      const who = yield* Effect.flatMap(principal(request), Rights.publishAny)
      yield* admission.publish(who.subject, request.address)
      return who
    })

  const admitStream = (request: RequestParts, channels: Channels) =>
    Effect.gen(function*() {
      const who = yield* reader(request, channels)
      yield* admission.stream(request.address)
      return { expiresAt: who.expiresAt }
    })

  return RequestPolicy.of({
    screen,
    publisher,
    authorizePublish: (who, message) => Rights.publish(who, message, access.enforced),
    reader,
    admitStream,
    operator: (request) => Effect.flatMap(principal(request), Rights.operate),
    figures: Effect.map(admission.figures, (figures) => ({ access: access.enforced ? "tokens" as const : "open" as const, ...figures }))
  })
})

/** The policy, with the Access service it checks tokens with; Admission is the node's (see Admission.ts). */
export const layer = Layer.effect(RequestPolicy, make).pipe(Layer.provide(AccessLayer))
