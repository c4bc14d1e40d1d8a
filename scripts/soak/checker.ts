/**
 * Decides, from a soak's recorded history alone, whether the service kept its delivery promises:
 *
 * - every stored message (every POST answered 201, every committed SQL row, and every write of
 *   unknown outcome that turns out to be stored) reached every subscriber that followed its
 *   channel from before it was written, exactly once;
 * - every subscriber received its messages in increasing id order, so all of them saw the
 *   messages they share in one order (ids sort as strings in delivery order);
 * - nothing was delivered that was not stored, with the same id, channel and body, nor to a
 *   subscriber not following its channel; no write that certainly failed was stored; nothing was
 *   stored twice.
 *
 * "Followed from before": a subscriber that began from an id (Last-Event-ID, or the lastEventId of
 * a history page) is owed every message after that id; one that began live, with no id, is owed
 * every message written after its connection opened (or after it last had to start over without
 * an id, having received nothing to resume from). A `reset` event excuses what it skips.
 *
 * Delays run from the start of a write to its delivery, to subscribers that were following and
 * reading at the time (a subscriber that stops reading delays only itself).
 *
 * Pure: records in, report out.
 */
import type * as History from "./history.js"

type Write = typeof History.Write.Type
type Row = typeof History.Row.Type
type Delivery = typeof History.Delivery.Type
type Reset = typeof History.Reset.Type
export type Outcome = Write["outcome"]

export interface Span {
  readonly n: number
  readonly kind: string
  readonly target: string
  readonly start: number
  readonly end: number
  readonly detail?: string | undefined
  readonly subscriber?: number | undefined
}

export interface LongestDelay {
  readonly millis: number
  readonly key: string
  readonly id: string
  readonly channel: string
  readonly subscriber: number
  readonly writtenAt: number
  readonly deliveredAt: number
  /** The faults whose time overlapped the message's, e.g. "node-freeze#7 node 2 (301.2–311.2 s)". */
  readonly overlapping: ReadonlyArray<string>
}

export interface Report {
  readonly faults: ReadonlyArray<{ readonly kind: string; readonly count: number; readonly millis: number }>
  readonly spans: ReadonlyArray<Span>
  readonly writes: {
    readonly post: Readonly<Record<Outcome, number>>
    readonly sql: Readonly<Record<Outcome, number>>
    /** Writes of unknown outcome found stored at the end. */
    readonly unknownStored: number
  }
  readonly rows: number
  readonly subscribers: number
  readonly connections: number
  readonly staleConnections: number
  /** Subscribers that had to start over live, having no id to resume from. */
  readonly liveRestarts: number
  readonly resets: number
  readonly skippedByReset: number
  readonly deliveries: number
  readonly lost: number
  readonly duplicated: number
  readonly outOfOrder: number
  /** Delivered but not stored as delivered (unknown id, other body or channel), or to a subscriber not following its channel. */
  readonly unstored: number
  /** Acknowledged but not stored, stored under another id, stored twice, stored though it failed, or stored by no known writer. */
  readonly storageErrors: number
  readonly anomalies: ReadonlyArray<{ readonly severity: "error" | "warning"; readonly what: string; readonly at: number }>
  readonly delay: {
    readonly p50: number
    readonly p99: number
    readonly longest: LongestDelay | undefined
  }
  /** Per second of writing: the longest and the median delay of the messages written in it. */
  readonly timeline: ReadonlyArray<{ readonly second: number; readonly max: number; readonly median: number }>
  readonly endedAt: number
  /** The first few problems, described. */
  readonly samples: ReadonlyArray<string>
  readonly ok: boolean
}

interface SubscriberState {
  readonly s: number
  readonly channels: "all" | ReadonlySet<string>
  readonly from: string | undefined
  readonly createdAt: number
  /** When the subscriber last began live without an id (undefined: it began from an id). */
  liveSince: number | undefined
  opens: number
  /** Message ids in arrival order, with when each came. */
  readonly delivered: Map<string, number>
  /** Id ranges (after, through] skipped by reset events. */
  readonly skipped: Array<readonly [string, string]>
}

const maxSamples = 25

const percentile = (sorted: ReadonlyArray<number>, fraction: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]!

const seconds = (millis: number) => `${(millis / 1000).toFixed(1)} s`

const emptyOutcomes = (): Record<Outcome, number> => ({ acked: 0, unknown: 0, refused: 0, failed: 0, rolledback: 0 })

export const check = (records: ReadonlyArray<History.Record>): Report => {
  const samples: Array<string> = []
  const problem = (text: string) => {
    if (samples.length < maxSamples) samples.push(text)
  }

  const writes = new Map<string, Write>()
  const rows = new Map<string, Row>()
  const rowsByKey = new Map<string, Array<Row>>()
  const subscribers = new Map<number, SubscriberState>()
  const spans: Array<Span> = []
  const anomalies: Array<{ severity: "error" | "warning"; what: string; at: number }> = []
  const outcomes = { post: emptyOutcomes(), sql: emptyOutcomes() }
  let connections = 0
  let staleConnections = 0
  let liveRestarts = 0
  let resets = 0
  let deliveries = 0
  let duplicated = 0
  let outOfOrder = 0
  let endedAt = 0
  // Deliveries are judged against the rows, which come last: keep them, in order, meanwhile.
  const received: Array<Delivery | Reset> = []

  for (const record of records) {
    switch (record._tag) {
      case "write":
        writes.set(record.key, record)
        outcomes[record.src][record.outcome]++
        break
      case "row": {
        rows.set(record.id, record)
        const same = rowsByKey.get(record.key)
        if (same === undefined) rowsByKey.set(record.key, [record])
        else same.push(record)
        break
      }
      case "fault":
        spans.push({
          n: record.n,
          kind: record.kind,
          target: record.target,
          start: record.start,
          end: record.end,
          detail: record.detail,
          subscriber: record.s
        })
        break
      case "anomaly":
        anomalies.push({ severity: record.severity, what: record.what, at: record.at })
        break
      case "sub":
        subscribers.set(record.s, {
          s: record.s,
          channels: record.channels === "all" ? "all" : new Set(record.channels),
          from: record.from,
          createdAt: record.at,
          liveSince: undefined,
          opens: 0,
          delivered: new Map(),
          skipped: []
        })
        break
      case "open": {
        connections++
        const subscriber = subscribers.get(record.s)
        if (subscriber === undefined) break
        subscriber.opens++
        if (record.last === undefined && subscriber.from === undefined) {
          if (subscriber.liveSince !== undefined) liveRestarts++
          subscriber.liveSince = record.at
        }
        break
      }
      case "drop":
        if (record.why === "stale") staleConnections++
        break
      case "msg":
      case "reset":
        received.push(record)
        break
      case "end":
        endedAt = record.at
        break
      case "meta":
        break
    }
  }

  // Storage: what the writers were told against what the table holds.
  let storageErrors = 0
  let unknownStored = 0
  for (const write of writes.values()) {
    const stored = rowsByKey.get(write.key)
    if (write.outcome === "acked") {
      if (stored === undefined) {
        storageErrors++
        problem(`${write.key} (${write.src}, ${write.ch}) was acknowledged at ${seconds(write.end)} but is not stored`)
      } else if (write.id !== undefined && stored[0]!.id !== write.id) {
        storageErrors++
        problem(`${write.key} was acknowledged as ${write.id} but is stored as ${stored[0]!.id}`)
      }
    } else if (write.outcome === "unknown") {
      if (stored !== undefined) unknownStored++
    } else if (stored !== undefined) {
      storageErrors++
      problem(`${write.key} (${write.src}) is stored although its write ${write.outcome}`)
    }
  }
  for (const [key, stored] of rowsByKey) {
    if (stored.length > 1) {
      storageErrors++
      problem(`${key} is stored ${stored.length} times: ${stored.map((row) => row.id).join(", ")}`)
    }
    const write = writes.get(key)
    if (write === undefined) {
      storageErrors++
      problem(`row ${stored[0]!.id} (${key}) was written by nobody the soak knows`)
    } else if (stored.some((row) => row.h !== write.h || row.ch !== write.ch)) {
      storageErrors++
      problem(`${key} is stored with another body or channel than was written`)
    }
  }

  // Deliveries, in each subscriber's arrival order.
  const follows = (subscriber: SubscriberState, channel: string) =>
    subscriber.channels === "all" || subscriber.channels.has(channel)
  let unstored = 0
  const newest = new Map<number, string>()
  for (const delivery of received) {
    const subscriber = subscribers.get(delivery.s)
    if (subscriber === undefined) continue
    if (delivery._tag === "reset") {
      // The stream goes on after the reset's id: what lies between is excused, and order restarts.
      resets++
      const last = newest.get(delivery.s) ?? subscriber.from ?? ""
      if (delivery.id > last) subscriber.skipped.push([last, delivery.id])
      newest.set(delivery.s, delivery.id)
      continue
    }
    deliveries++
    if (subscriber.delivered.has(delivery.id)) {
      duplicated++
      problem(`subscriber ${delivery.s} got ${delivery.id} (${delivery.key}) again at ${seconds(delivery.at)}, on connection ${delivery.c}`)
    } else {
      const before = newest.get(delivery.s) ?? ""
      if (delivery.id < before) {
        outOfOrder++
        problem(`subscriber ${delivery.s} got ${delivery.id} (${delivery.key}) after ${before}, at ${seconds(delivery.at)}, on connection ${delivery.c}`)
      } else {
        newest.set(delivery.s, delivery.id)
      }
      subscriber.delivered.set(delivery.id, delivery.at)
    }
    const row = rows.get(delivery.id)
    if (row === undefined || row.key !== delivery.key || row.h !== delivery.h || row.ch !== delivery.ch) {
      unstored++
      problem(
        row === undefined
          ? `subscriber ${delivery.s} got ${delivery.id} (${delivery.key}), which is not stored`
          : `subscriber ${delivery.s} got ${delivery.id} as ${delivery.key} on ${delivery.ch}, stored as ${row.key} on ${row.ch}`
      )
    } else if (!follows(subscriber, row.ch)) {
      unstored++
      problem(`subscriber ${delivery.s} got ${delivery.id} of ${row.ch}, a channel it does not follow`)
    }
  }

  // What each subscriber was owed, and when it got it.
  let lost = 0
  let skippedByReset = 0
  const delays = new Map<string, { millis: number; subscriber: number; at: number }>()
  const stopped = spans.filter((span) => span.subscriber !== undefined)
  for (const subscriber of subscribers.values()) {
    if (subscriber.from === undefined && subscriber.liveSince === undefined) {
      anomalies.push({ severity: "error", what: `subscriber ${subscriber.s} never connected`, at: subscriber.createdAt })
      continue
    }
    for (const row of rows.values()) {
      if (!follows(subscriber, row.ch)) continue
      const write = writes.get(row.key)
      const owed = subscriber.from !== undefined
        ? row.id > subscriber.from
        : write !== undefined && write.start > subscriber.liveSince!
      if (!owed) continue
      const at = subscriber.delivered.get(row.id)
      if (at === undefined) {
        if (subscriber.skipped.some(([after, through]) => row.id > after && row.id <= through)) {
          skippedByReset++
          continue
        }
        lost++
        problem(
          `subscriber ${subscriber.s} never got ${row.id} (${row.key}, ${row.ch}, ${write?.outcome ?? "unknown writer"}${
            write === undefined ? "" : ` at ${seconds(write.start)}`
          })`
        )
        continue
      }
      // Delays count where the subscriber was there before the write (not replays of old
      // messages), and was reading (not stopped by a fault of its own).
      if (write === undefined || write.start < subscriber.createdAt) continue
      if (stopped.some((span) => span.subscriber === subscriber.s && span.start <= at && span.end >= write.start)) continue
      const millis = at - write.start
      const known = delays.get(row.id)
      if (known === undefined || millis > known.millis) delays.set(row.id, { millis, subscriber: subscriber.s, at })
    }
  }

  const timelineBuckets = new Map<number, Array<number>>()
  let longest: LongestDelay | undefined
  for (const [id, delay] of delays) {
    const row = rows.get(id)!
    const write = writes.get(row.key)!
    const second = Math.floor(write.start / 1000)
    const bucket = timelineBuckets.get(second)
    if (bucket === undefined) timelineBuckets.set(second, [delay.millis])
    else bucket.push(delay.millis)
    if (longest === undefined || delay.millis > longest.millis) {
      longest = {
        millis: delay.millis,
        key: row.key,
        id,
        channel: row.ch,
        subscriber: delay.subscriber,
        writtenAt: write.start,
        deliveredAt: delay.at,
        overlapping: []
      }
    }
  }
  if (longest !== undefined) {
    const { deliveredAt, writtenAt } = longest
    longest = {
      ...longest,
      overlapping: spans
        .filter((span) => span.start <= deliveredAt && span.end >= writtenAt)
        .filter((span) => span.subscriber === undefined || span.subscriber === longest!.subscriber)
        .map((span) => `${span.kind}#${span.n} ${span.target} (${seconds(span.start)}–${seconds(span.end)})`)
    }
  }
  const allDelays = [...delays.values()].map((delay) => delay.millis).sort((a, b) => a - b)
  const timeline = [...timelineBuckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([second, bucket]) => {
      bucket.sort((a, b) => a - b)
      return { second, max: bucket[bucket.length - 1]!, median: percentile(bucket, 0.5) }
    })

  const faultKinds = new Map<string, { count: number; millis: number }>()
  for (const span of spans) {
    const entry = faultKinds.get(span.kind) ?? { count: 0, millis: 0 }
    entry.count++
    entry.millis += span.end - span.start
    faultKinds.set(span.kind, entry)
  }
  for (const anomaly of anomalies) if (anomaly.severity === "error") problem(`anomaly at ${seconds(anomaly.at)}: ${anomaly.what}`)

  return {
    faults: [...faultKinds.entries()].map(([kind, { count, millis }]) => ({ kind, count, millis })),
    spans,
    writes: { post: outcomes.post, sql: outcomes.sql, unknownStored },
    rows: rows.size,
    subscribers: subscribers.size,
    connections,
    staleConnections,
    liveRestarts,
    resets,
    skippedByReset,
    deliveries,
    lost,
    duplicated,
    outOfOrder,
    unstored,
    storageErrors,
    anomalies,
    delay: { p50: percentile(allDelays, 0.5), p99: percentile(allDelays, 0.99), longest },
    timeline,
    endedAt,
    samples,
    ok: lost + duplicated + outOfOrder + unstored + storageErrors === 0 &&
      anomalies.every((anomaly) => anomaly.severity !== "error")
  }
}
