/**
 * Telemetry: the metrics the modules define with `effect/Metric` (Poller, Broadcast, EventStream,
 * Wakeups, Http/RequestLog), rendered in Prometheus' text format for `GET /metrics` through
 * @effect/opentelemetry and OpenTelemetry's Prometheus exporter — read when scraped, never pushed —
 * and, when OTEL_EXPORTER_OTLP_ENDPOINT is set, every span exported over OTLP/HTTP through
 * @effect/opentelemetry's NodeSdk. Without that setting the tracing SDK is not even loaded: spans
 * stay Effect's own, and nothing is sent or batched.
 */
import * as Metrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import type { MetricData, ScopeMetrics } from "@opentelemetry/sdk-metrics"
import { Context, Effect, Layer, Option } from "effect"
import { AppConfig } from "./Config.js"

export class Telemetry extends Context.Tag("pollcast/Telemetry")<Telemetry, {
  /** Every metric of the process, in Prometheus' text exposition format (version 0.0.4). */
  readonly scrape: Effect.Effect<string>
  /** Every metric of the process as data (plain, to cross to another process). */
  readonly collect: Effect.Effect<Array<ScopeMetrics>>
  /**
   * The metrics of several processes of a node in one text, each series labelled with the
   * `process` it comes from (see Cluster/Primary).
   */
  readonly render: (processes: ReadonlyArray<ProcessMetrics>) => Effect.Effect<string>
}>() {}

export interface ProcessMetrics {
  readonly process: string
  readonly scopeMetrics: ReadonlyArray<ScopeMetrics>
}

/** One metric's series from every process, each labelled with its process: a metric family is written once. */
const merge = (processes: ReadonlyArray<ProcessMetrics>): Array<MetricData> => {
  const byName = new Map<string, MetricData>()
  for (const { process, scopeMetrics } of processes) {
    for (const { metrics } of scopeMetrics) {
      for (const metric of metrics) {
        const labelled = metric.dataPoints.map((point) => ({ ...point, attributes: { ...point.attributes, process } }))
        const found = byName.get(metric.descriptor.name)
        // A name has one kind in every process: they run the same code.
        if (found === undefined) byName.set(metric.descriptor.name, { ...metric, dataPoints: labelled } as MetricData)
        else (found.dataPoints as Array<unknown>).push(...labelled)
      }
    }
  }
  return [...byName.values()]
}

/** Where OTLP/HTTP traces go, below the collector's base URL (as OpenTelemetry's SDKs do). */
const tracesUrl = (endpoint: URL) => new URL("v1/traces", endpoint.href.endsWith("/") ? endpoint : `${endpoint.href}/`).href

/** Spans to `endpoint` (as NodeSdk wires them), with the tracing SDK loaded only now. */
const tracing = (endpoint: URL) =>
  Layer.unwrapEffect(
    Effect.promise(async () => {
      const [NodeSdk, Tracer, { OTLPTraceExporter }, { BatchSpanProcessor }] = await Promise.all([
        import("@effect/opentelemetry/NodeSdk"),
        import("@effect/opentelemetry/Tracer"),
        import("@opentelemetry/exporter-trace-otlp-http"),
        import("@opentelemetry/sdk-trace-base")
      ])
      const processor = new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl(endpoint) }))
      return Tracer.layer.pipe(Layer.provide(NodeSdk.layerTracerProvider(processor)))
    })
  )

export const layer = Layer.unwrapEffect(
  Effect.gen(function*() {
    const config = yield* AppConfig
    // Serves no port of its own: /metrics renders what it collects.
    const exporter = new PrometheusExporter({ preventServerStart: true })
    // No otel_scope_* labels on every series: every metric comes from the same producer.
    const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
    const collected = Effect.promise(() => exporter.collect())
    const scrape = Effect.map(collected, ({ resourceMetrics }) => serializer.serialize(resourceMetrics))
    const collect = Effect.map(collected, ({ resourceMetrics }) =>
      resourceMetrics.scopeMetrics.map(({ metrics, scope }) => ({ scope: { ...scope }, metrics })))
    const render = (processes: ReadonlyArray<ProcessMetrics>) =>
      Effect.map(collected, ({ resourceMetrics: { resource } }) =>
        serializer.serialize({ resource, scopeMetrics: [{ scope: { name: "pollcast" }, metrics: merge(processes) }] }))
    const exported = Layer.merge(
      Metrics.layer(() => exporter),
      Option.match(config.otlpEndpoint, { onNone: () => Layer.empty, onSome: tracing })
    ).pipe(Layer.provide(Resource.layerFromEnv(Resource.configToAttributes({ serviceName: config.serviceName }))))
    return Layer.merge(Layer.succeed(Telemetry, Telemetry.of({ scrape, collect, render })), exported)
  })
)
