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
import { Context, Effect, Layer, Option } from "effect"
import { AppConfig } from "./Config.js"

export class Telemetry extends Context.Tag("pollcast/Telemetry")<Telemetry, {
  /** Every metric of the process, in Prometheus' text exposition format (version 0.0.4). */
  readonly scrape: Effect.Effect<string>
}>() {}

/** The content type of `scrape`'s text. */

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
    const scrape = Effect.promise(() => exporter.collect()).pipe(
      Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics))
    )
    const exported = Layer.merge(
      Metrics.layer(() => exporter),
      Option.match(config.otlpEndpoint, { onNone: () => Layer.empty, onSome: tracing })
    ).pipe(Layer.provide(Resource.layerFromEnv(Resource.configToAttributes({ serviceName: config.serviceName }))))
    return Layer.merge(Layer.succeed(Telemetry, Telemetry.of({ scrape })), exported)
  })
)
