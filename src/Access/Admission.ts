/**
 * Admission: how much a client may ask of the node. A token bucket per publisher (token subject,
 * else client address) for POST /messages, and caps on open event streams per client address and
 * per node (Limits.ts keeps the counts). Both are keyed by what clients choose, and bounded.
 */
import { ServiceUnavailable, TooManyRequests } from "../Domain/Errors.js"
import ipaddr from "ipaddr.js"
import * as Net from "node:net"
import { RateLimiter, StreamCounts } from "./Limits.js"

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

/** An admitted event stream's place in the counts, given back with `release` when it closes. */
export class AdmittedStream {
  constructor(private readonly streams: StreamCounts, private readonly client: string) {}

  release() {
    this.streams.remove(this.client)
  }
}

export const make = (limits: AdmissionSettings) => {
  const rateLimiter = limits.publishRate > 0
    ? new RateLimiter(limits.publishRate, limits.publishBurst, maxTrackedPublishers)
    : undefined
  const streams = new StreamCounts(limits.maxStreamsPerClient, limits.maxStreams)

  return {
    /** Takes a publish from the bucket of `subject` (else of `address`), or says when to come back. */
    publish: (subject: string | undefined, address: string, now: number): TooManyRequests | undefined => {
      if (rateLimiter === undefined) return undefined
      const wait = rateLimiter.take(subject !== undefined ? `sub:${subject}` : limitKey(address), now)
      if (wait <= 0) return undefined
      const seconds = Math.max(1, Math.ceil(wait / 1000))
      return new TooManyRequests({
        retryAfter: seconds,
        message: `Too many messages: at most ${limits.publishBurst} at once, then ${limits.publishRate} a second; try again in ${seconds} s`
      })
    },

    /** Counts a new event stream from `address`, or refuses it with the cap it would pass. */
    stream: (address: string): AdmittedStream | TooManyRequests | ServiceUnavailable => {
      const client = limitKey(address)
      const refusal = streams.add(client)
      if (refusal === "node") {
        return new ServiceUnavailable({
          retryAfter: streamRetryAfterSeconds,
          message: `This node holds as many event streams as it may (MAX_STREAMS ${limits.maxStreams}); try again shortly`
        })
      }
      if (refusal === "client") {
        return new TooManyRequests({
          retryAfter: streamRetryAfterSeconds,
          message: `At most ${limits.maxStreamsPerClient} event streams may be open from one address (MAX_STREAMS_PER_CLIENT)`
        })
      }
      return new AdmittedStream(streams, client)
    },

    figures: () => ({
      publishersTracked: rateLimiter?.size ?? 0,
      streamClients: streams.clients,
      streams: streams.streams
    })
  }
}
