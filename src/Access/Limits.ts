/**
 * The counters behind the limits (see Http/RequestPolicy.ts): a rate limiter by identity and the
 * open streams by client. Both are keyed by what clients choose (token subjects, addresses), so
 * both are bounded and free their entries themselves; times are passed in, in milliseconds.
 */

/**
 * A token bucket per identity (`rate` per second, `burst` at once), kept as the one number the
 * generic cell rate algorithm needs: the time at which the bucket is full again. An identity is
 * forgotten once its bucket is full, so the map holds only identities that published within the
 * last `burst / rate` seconds; and never more than `maxTracked` of them: beyond that the least
 * recently seen is forgotten (it starts again with a full bucket, which only ever favours it).
 */
export class RateLimiter {
  /** Identity → when its bucket is full again. In order of last use. */
  private readonly fullAt = new Map<string, number>()
  private readonly interval: number
  private readonly tolerance: number

  constructor(rate: number, burst: number, private readonly maxTracked: number) {
    this.interval = 1000 / rate
    this.tolerance = this.interval * (burst - 1)
  }

  /** Takes one token for `identity`: 0 if it had one, else the milliseconds until it will. */
  take(identity: string, now: number): number {
    this.forgetFull(now)
    const previous = this.fullAt.get(identity)
    const from = previous === undefined || previous < now ? now : previous
    const wait = from - this.tolerance - now
    if (wait > 0) return wait
    // Deleted first so that the identity moves to the end of the order.
    this.fullAt.delete(identity)
    if (this.fullAt.size >= this.maxTracked) this.forgetOldest()
    this.fullAt.set(identity, from + this.interval)
    return 0
  }

  /** Identities tracked now. */
  get size(): number {
    return this.fullAt.size
  }

  /** Forgets full buckets, from the least recently used on; stops at the first that is not full. */
  private forgetFull(now: number) {
    for (const [identity, fullAt] of this.fullAt) {
      if (fullAt > now) return
      this.fullAt.delete(identity)
    }
  }

  private forgetOldest() {
    for (const identity of this.fullAt.keys()) {
      this.fullAt.delete(identity)
      return
    }
  }
}

export type StreamRefusal = "client" | "node"

/**
 * Open streams per client and on the node, each capped (0: no cap). A client's entry exists only
 * while it has a stream open, so the map never outgrows the streams.
 */
export class StreamCounts {
  private readonly byClient = new Map<string, number>()
  private open = 0

  constructor(private readonly maxPerClient: number, private readonly maxTotal: number) {}

  /** Counts a new stream of `client`, or says which cap it would pass (and counts nothing). */
  add(client: string): StreamRefusal | undefined {
    if (this.maxTotal > 0 && this.open >= this.maxTotal) return "node"
    const count = this.byClient.get(client) ?? 0
    if (this.maxPerClient > 0 && count >= this.maxPerClient) return "client"
    this.byClient.set(client, count + 1)
    this.open++
    return undefined
  }

  remove(client: string) {
    const count = this.byClient.get(client)
    if (count === undefined) return
    this.open--
    if (count <= 1) this.byClient.delete(client)
    else this.byClient.set(client, count - 1)
  }

  get streams(): number {
    return this.open
  }

  /** Clients with a stream open. */
  get clients(): number {
    return this.byClient.size
  }
}
