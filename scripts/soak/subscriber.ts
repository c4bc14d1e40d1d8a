/**
 * A soak subscriber: an `EventSource` (the `eventsource` package, which behaves as browsers do)
 * following some channels or all, recording every event in the history. When its connection
 * fails it either lets the package reconnect to the same node with Last-Event-ID, or moves to
 * another node itself, resuming from the last id it got, as a client behind a load balancer
 * would. The package does not surface heartbeats (SSE comments), so a fetch wrapper watches the
 * bytes: a connection silent for longer than a few heartbeats is stale, and abandoned. The same
 * wrapper can stop reading, so that the node sees a client that does not keep up.
 */
import { Hash } from "effect"
import type { PCGRandom } from "effect/Utils"
import { EventSource, type FetchLike, type FetchLikeResponse } from "eventsource"
import type { HistoryWriter } from "./history.js"
import { keyOf } from "./publisher.js"

export interface SubscriberOptions {
  readonly s: number
  readonly channels: "all" | ReadonlyArray<string>
  /** Resume from this id (it must get everything after it); none: live from its first connection. */
  readonly from?: string | undefined
  /** Send `from` as the `lastEventId` query parameter rather than the Last-Event-ID header. */
  readonly fromInQuery?: boolean
  readonly nodes: ReadonlyArray<string>
  readonly node: number
  readonly random: PCGRandom
  readonly history: HistoryWriter
  readonly now: () => number
  /** Silence (no byte, not even a heartbeat) after which an open connection is abandoned. */
  readonly staleAfterMillis: number
  /** How long a connection may take to open before it is abandoned. */
  readonly connectTimeoutMillis: number
}

/** The key prefix of the end-of-run markers, one per channel. */
export const markerPrefix = "z"

export class Subscriber {
  readonly s: number
  lastId: string | undefined
  node: number
  deliveries = 0
  drops = 0
  private source: EventSource | undefined
  private connection = 0
  private state: "connecting" | "open" | "closed" = "connecting"
  private stateSince = 0
  private lastByteAt = 0
  private paused: { readonly resumed: Promise<void>; readonly resume: () => void } | undefined
  private firstConnection = true
  private wasOpen = false
  private readonly markers = new Set<string>()

  constructor(private readonly options: SubscriberOptions) {
    this.s = options.s
    this.lastId = options.from
    this.node = options.node
    options.history.write({
      _tag: "sub",
      s: options.s,
      channels: options.channels,
      ...(options.from === undefined ? {} : { from: options.from }),
      at: options.now()
    })
    this.connect(options.node)
  }

  /** Whether it has the end-of-run marker of each channel it follows. */
  caughtUp(channels: ReadonlyArray<string>) {
    const followed = this.options.channels === "all" ? channels : this.options.channels
    return followed.every((channel) => this.markers.has(channel))
  }

  /** Abandons a connection that is silent or slow to open; called every half second or so. */
  watch() {
    const now = this.options.now()
    if (this.state === "open" && this.paused === undefined && now - this.lastByteAt > this.options.staleAfterMillis) {
      this.move("stale")
    } else if (this.state === "connecting" && now - this.stateSince > this.options.connectTimeoutMillis) {
      this.move("connect timeout")
    }
  }

  /** Leaves its node for another one, as a client does when a load balancer sends it elsewhere. */
  rebalance() {
    if (this.paused === undefined && this.state === "open") this.move("rebalance")
  }

  /** Stops reading its stream (the node will see its backlog grow) until `resume`. */
  pause() {
    if (this.paused !== undefined) return
    let resume = () => {}
    const resumed = new Promise<void>((resolve) => (resume = resolve))
    this.paused = { resumed, resume }
  }

  resume() {
    const paused = this.paused
    this.paused = undefined
    this.lastByteAt = this.options.now()
    paused?.resume()
  }

  close() {
    this.state = "closed"
    this.source?.close()
    this.source = undefined
    this.resume()
  }

  private url(node: number) {
    const url = new URL("/events", this.options.nodes[node]!)
    if (this.options.channels !== "all") for (const channel of this.options.channels) url.searchParams.append("channel", channel)
    if (this.firstConnection && this.options.fromInQuery && this.options.from !== undefined) {
      url.searchParams.set("lastEventId", this.options.from)
    }
    return url
  }

  private connect(node: number) {
    if (this.state === "closed") return
    this.node = node
    this.state = "connecting"
    this.stateSince = this.options.now()
    this.wasOpen = false
    const source = new EventSource(this.url(node), { fetch: this.fetch })
    this.firstConnection = false
    this.source = source
    source.addEventListener("open", () => {
      if (source !== this.source) return
      this.state = "open"
      this.wasOpen = true
      this.lastByteAt = this.options.now()
    })
    source.addEventListener("message", (event) => {
      if (source !== this.source) return
      const message = JSON.parse(event.data) as { id: string; channel: string; body: string }
      const key = keyOf(message.body)
      if (message.id !== event.lastEventId) {
        this.options.history.write({
          _tag: "anomaly",
          severity: "error",
          what: `subscriber ${this.s} got an event with id ${event.lastEventId} carrying message ${message.id}`,
          at: this.options.now()
        })
      }
      this.options.history.write({
        _tag: "msg",
        s: this.s,
        c: this.connection,
        id: event.lastEventId,
        key,
        ch: message.channel,
        h: Hash.string(message.body),
        at: this.options.now()
      })
      this.deliveries++
      this.lastId = event.lastEventId
      if (key.startsWith(markerPrefix)) this.markers.add(message.channel)
    })
    source.addEventListener("reset", (event) => {
      if (source !== this.source) return
      this.options.history.write({ _tag: "reset", s: this.s, c: this.connection, id: event.lastEventId, at: this.options.now() })
      this.lastId = event.lastEventId
    })
    source.addEventListener("error", (event) => {
      if (source !== this.source) return
      this.drops++
      const why = [event.code, event.message].filter((part) => part !== undefined && part !== "").join(" ") || "error"
      this.options.history.write({ _tag: "drop", s: this.s, c: this.connection, why, at: this.options.now() })
      // CLOSED: the package gives up (an HTTP error); CONNECTING: it will retry the same node.
      if (source.readyState === EventSource.CLOSED || !this.wasOpen || this.options.random.number() < 0.5) {
        this.move(undefined)
      } else {
        this.state = "connecting"
        this.stateSince = this.options.now()
        this.wasOpen = false
      }
    })
  }

  /** Gives up the current connection and opens one on another node, from the last id it got. */
  private move(why: string | undefined) {
    if (this.state === "closed") return
    if (why !== undefined) {
      this.drops++
      this.options.history.write({ _tag: "drop", s: this.s, c: this.connection, why, at: this.options.now() })
    }
    this.source?.close()
    this.source = undefined
    this.state = "connecting"
    this.stateSince = this.options.now()
    const others = this.options.nodes.map((_, index) => index).filter((index) => index !== this.node)
    const next = others.length === 0 ? this.node : others[this.options.random.integer(others.length)]!
    setTimeout(() => this.connect(next), 100 + this.options.random.integer(400))
  }

  /** fetch for the EventSource: sends our last id when it has none, notes the open, watches the bytes. */
  private readonly fetch: FetchLike = async (url, init) => {
    const connection = ++this.connection
    const headers = new Headers(init.headers)
    if (!headers.has("last-event-id") && this.lastId !== undefined && !new URL(url).searchParams.has("lastEventId")) {
      headers.set("last-event-id", this.lastId)
    }
    const last = headers.get("last-event-id") ?? new URL(url).searchParams.get("lastEventId") ?? undefined
    const response = await fetch(url, { ...init, headers })
    if (response.ok && this.connection === connection) {
      this.options.history.write({
        _tag: "open",
        s: this.s,
        c: connection,
        node: this.node,
        ...(last === undefined ? {} : { last }),
        at: this.options.now()
      })
    }
    const reader = response.body?.getReader()
    const watched: FetchLikeResponse = {
      url: response.url,
      status: response.status,
      redirected: response.redirected,
      headers: response.headers,
      body: reader === undefined ? null : {
        getReader: () => ({
          read: async () => {
            while (this.paused !== undefined) await this.paused.resumed
            const chunk = await reader.read()
            this.lastByteAt = this.options.now()
            return chunk
          },
          cancel: () => reader.cancel()
        })
      }
    }
    return watched
  }
}
