/**
 * Reads a node's /metrics as Prometheus would: the text format parsed by a library (prom2javascript),
 * with a lookup of one series by name and labels.
 */
import { Effect } from "effect"
import { getMetricsFromIterator, type PromHistogramData, type PromMetrics } from "prom2javascript"

export interface Scrape {
  readonly metrics: PromMetrics
  /** The value of a counter or gauge series whose labels include `labels`; 0 when it has none yet. */
  readonly value: (name: string, labels?: Record<string, string>) => number
  /** The count of a histogram series whose labels include `labels`; 0 when it has none yet. */
  readonly count: (name: string, labels?: Record<string, string>) => number
}

const matches = (series: { readonly labels: Record<string, string> }, labels: Record<string, string>) =>
  Object.entries(labels).every(([name, value]) => series.labels[name] === value)

export const parse = (text: string) =>
  Effect.map(Effect.promise(() => getMetricsFromIterator(text.split("\n")[Symbol.iterator]())), (metrics): Scrape => ({
    metrics,
    value: (name, labels = {}) => {
      const series = (metrics[name]?.data ?? []) as ReadonlyArray<{ labels: Record<string, string>; value: number }>
      return series.filter((entry) => matches(entry, labels)).reduce((sum, entry) => sum + entry.value, 0)
    },
    count: (name, labels = {}) => {
      const series = (metrics[name]?.data ?? []) as ReadonlyArray<PromHistogramData>
      return series.filter((entry) => matches(entry, labels)).reduce((sum, entry) => sum + entry.count, 0)
    }
  }))

/** GETs `url` (a node's /metrics) and parses it; fails on any status but 200. */
export const scrape = (url: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const response = yield* Effect.promise(() => fetch(url, { headers }))
    const text = yield* Effect.promise(() => response.text())
    if (response.status !== 200) return yield* Effect.fail(new Error(`${url} answered ${response.status}: ${text}`))
    if (!(response.headers.get("content-type") ?? "").startsWith("text/plain")) {
      return yield* Effect.fail(new Error(`${url} is not text/plain`))
    }
    return yield* parse(text)
  })
