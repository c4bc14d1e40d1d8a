/**
 * Admission: how much a client may ask of the node. A token bucket per publisher (token subject,
 * else client address) for POST /messages, and caps on open event streams per client address and
 * per node (Limits.ts keeps the counts). Both are keyed by what clients choose, and bounded. The
 * counts are the node's, whatever its number of processes: one process keeps them.
 */
import { Clock, Context, Effect, Layer, Scope } from "effect"
import ipaddr from "ipaddr.js"
import * as Net from "node:net"
import { AppConfig } from "../Config.js"
import { ServiceUnavailable, TooManyRequests } from "../Domain/Errors.js"
import { RateLimiter, StreamCounts, type StreamRefusal } from "./Limits.js"

export interface AdmissionSettings {
  readonly publishRate: number
  readonly publishBurst: number
  readonly maxStreams: number
  readonly maxStreamsPerClient: number
}

/**
 * The key limits count a client by: its IPv4 address, or the /64 network of its IPv6 address
 * (one subscriber is routinely given a whole /64, so single IPv6 addresses cost an attacker nothing).
 */
export const limitKey = (address: string): string => {
  if (!Net.isIPv6(address)) return address
  const parts = ipaddr.IPv6.parse(address).parts.slice(0, 4)
  return `${parts.map((part) => part.toString(16)).join(":")}::/64`
}

/** Publishers tracked by the rate limiter at most (a few MB); see RateLimiter. */
const maxTrackedPublishers = 100_000

/** Retry-After for a stream refused by a cap: time for others to close, short enough to come back soon. */
const streamRetryAfterSeconds = 5

export interface AdmissionFigures {
  readonly publishersTracked: number
  readonly streamClients: number
  readonly streams: number
}

/**
 * The counts themselves, kept by the one process that admits for the node: the node itself, or
 * the primary of a node of several processes, which its workers ask (see Cluster/Worker).
 */
export const counts = (limits: AdmissionSettings) => {
  const rateLimiter = limits.publishRate > 0
    ? new RateLimiter(limits.publishRate, limits.publishBurst, maxTrackedPublishers)
    : undefined
  const streams = new StreamCounts(limits.maxStreamsPerClient, limits.maxStreams)
  return {
    /** Takes a publish from the bucket of `publisher` (see publisherKey): 0, or the milliseconds to wait. */
    publish: (publisher: string, now: number): number => rateLimiter?.take(publisher, now) ?? 0,
    /** Counts a new event stream of `client` (see limitKey), or says which cap it would pass. */
    addStream: (client: string): StreamRefusal | undefined => streams.add(client),
    removeStream: (client: string) => streams.remove(client),
    figures: (): AdmissionFigures => ({
      publishersTracked: rateLimiter?.size ?? 0,
      streamClients: streams.clients,
      streams: streams.streams
    })
  }
}

export type Counts = ReturnType<typeof counts>

/** Whose bucket a publish is taken from: its token's subject, else its client's address. */
export const publisherKey = (subject: string | undefined, address: string) =>
  subject !== undefined ? `sub:${subject}` : limitKey(address)

/** The answer to a publish that must wait `wait` milliseconds. */
export const publishRefused = (limits: AdmissionSettings, wait: number) => {
  const seconds = Math.max(1, Math.ceil(wait / 1000))
  return new TooManyRequests({
    retryAfter: seconds,
    message: `Too many messages: at most ${limits.publishBurst} at once, then ${limits.publishRate} a second; try again in ${seconds} s`
  })
}

/** The answer to a stream refused by a cap. */
export const streamRefused = (limits: AdmissionSettings, refusal: StreamRefusal) =>
  refusal === "node"
    ? new ServiceUnavailable({
      retryAfter: streamRetryAfterSeconds,
      message: `This node holds as many event streams as it may (MAX_STREAMS ${limits.maxStreams}); try again shortly`
    })
    : new TooManyRequests({
      retryAfter: streamRetryAfterSeconds,
      message: `At most ${limits.maxStreamsPerClient} event streams may be open from one address (MAX_STREAMS_PER_CLIENT)`
    })

export class Admission extends Context.Tag("pollcast/Admission")<Admission, {
  /** Takes a publish from the bucket of `subject` (else of `address`), or refuses it with when to come back. */
  readonly publish: (subject: string | undefined, address: string) => Effect.Effect<void, TooManyRequests | ServiceUnavailable>
  /** Counts a new event stream from `address` until the scope closes, or refuses it with the cap it would pass. */
  readonly stream: (address: string) => Effect.Effect<void, TooManyRequests | ServiceUnavailable, Scope.Scope>
  readonly figures: Effect.Effect<AdmissionFigures>
}>() {}

/** Admission over counts of this process's own. */
export const local = (limits: AdmissionSettings, kept: Counts = counts(limits)) =>
  Admission.of({
    publish: (subject, address) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const wait = kept.publish(publisherKey(subject, address), now)
        return wait > 0 ? Effect.fail(publishRefused(limits, wait)) : Effect.void
      }),
    stream: (address) =>
      Effect.suspend(() => {
        const client = limitKey(address)
        const refusal = kept.addStream(client)
        if (refusal !== undefined) return Effect.fail(streamRefused(limits, refusal))
        // A plain finalizer: acquireRelease would keep a copy of the fiber's references per stream,
        // and an effect made ahead would be kept as long.
        return Effect.scopeWith((scope) => Scope.addFinalizerExit(scope, () => Effect.sync(() => kept.removeStream(client))))
      }),
    figures: Effect.sync(kept.figures)
  })

export const layer = Layer.effect(Admission, Effect.map(AppConfig, (config) => local(config.limits)))
