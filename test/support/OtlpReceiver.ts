/**
 * A local stand-in for an OpenTelemetry collector: it accepts OTLP/HTTP trace exports (JSON, as
 * @opentelemetry/exporter-trace-otlp-http sends them) on a free port and keeps every span.
 */
import { Effect } from "effect"
import * as Http from "node:http"

export interface ReceivedSpan {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string | undefined
  readonly links: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
  readonly attributes: Record<string, unknown>
}

interface ExportRequest {
  readonly resourceSpans?: ReadonlyArray<{
    readonly scopeSpans?: ReadonlyArray<{
      readonly spans?: ReadonlyArray<{
        readonly name: string
        readonly traceId: string
        readonly spanId: string
        readonly parentSpanId?: string
        readonly links?: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
        readonly attributes?: ReadonlyArray<{ readonly key: string; readonly value: Record<string, unknown> }>
      }>
    }>
  }>
}

export interface OtlpReceiver {
  /** The collector's base URL, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string
  readonly spans: Array<ReceivedSpan>
  /** The raw bodies received, to look for what must never be exported. */
  readonly bodies: Array<string>
}

export const start = Effect.acquireRelease(
  Effect.async<{ server: Http.Server; receiver: OtlpReceiver }>((resume) => {
    const spans: Array<ReceivedSpan> = []
    const bodies: Array<string> = []
    const server = Http.createServer((request, response) => {
      let text = ""
      request.on("data", (chunk) => (text += chunk))
      request.on("end", () => {
        bodies.push(text)
        if (request.url === "/v1/traces" && text !== "") {
          const body = JSON.parse(text) as ExportRequest
          for (const resource of body.resourceSpans ?? []) {
            for (const scope of resource.scopeSpans ?? []) {
              for (const span of scope.spans ?? []) {
                spans.push({
                  name: span.name,
                  traceId: span.traceId,
                  spanId: span.spanId,
                  parentSpanId: span.parentSpanId,
                  links: span.links ?? [],
                  attributes: Object.fromEntries((span.attributes ?? []).map(({ key, value }) => [key, Object.values(value)[0]]))
                })
              }
            }
          }
        }
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({ server, receiver: { endpoint: `http://127.0.0.1:${port}`, spans, bodies } }))
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
      server.closeAllConnections()
    })
).pipe(Effect.map(({ receiver }) => receiver))
