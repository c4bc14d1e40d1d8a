/**
 * How pollcast declares its metrics: counters incremental (each update adds), each described for
 * /metrics.
 */
import { Metric, type MetricBoundaries } from "effect"

export const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

export const gauge = (name: string, description: string) => Metric.gauge(name, { description })

/** A histogram whose observations are counted in the buckets `boundaries` make. */
export const histogram = (name: string, description: string, boundaries: MetricBoundaries.MetricBoundaries) =>
  Metric.histogram(name, boundaries, description)
