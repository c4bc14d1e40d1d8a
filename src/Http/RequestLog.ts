/**
 * What is recorded of every request, in one place for the HttpRouter app and the `/events`
 * handler alike (Http.ts calls it before dispatching either): one access log line once the
 * response is done — method, path without its query (which may hold a token), status, duration,
 * client address (ClientAddress.ts, with TRUST_PROXY) — and the HTTP metrics.
 *
 * An event stream's line comes when it closes, with the stream's whole duration; its duration is
 * kept out of the duration histogram, which is about answers.
 */
import { Effect, Metric, MetricBoundaries, MetricLabel, Runtime } from "effect"
import type * as NodeHttp from "node:http"
import { AppConfig } from "../Config.js"
import { clientAddress } from "./ClientAddress.js"

export const requests = Metric.counter("pollcast_http_requests_total", {
  description: "HTTP requests answered, by method, route and status (event streams counted when they close)",
  incremental: true
})
export const requestDuration = Metric.histogram(
  "pollcast_http_request_duration_seconds",
  MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 16 }),
  "Time from a request's arrival to the end of its answer, by method and route (not GET /events)"
)

const routes = new Set(["/messages", "/events", "/healthz", "/readyz", "/stats", "/metrics", "/openapi.json", "/docs", "/"])

/** The route a path belongs to: a small fixed set, so that labels cannot grow with what clients send. */
export const routeOf = (path: string) =>
  routes.has(path) ? path : path.startsWith("/assets/") ? "/assets" : path.startsWith("/docs/") ? "/docs" : "other"

const methods = new Set(["GET", "POST", "OPTIONS", "HEAD", "PUT", "PATCH", "DELETE"])

/** Label arrays by "method route status", made once each: a metric finds its series by the array's identity. */
const labelCache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
const labelsOf = (method: string, route: string, status?: number) => {
  const key = `${method} ${route} ${status ?? ""}`
  let labels = labelCache.get(key)
  if (labels === undefined) {
    labels = [
      MetricLabel.make("method", method),
      MetricLabel.make("route", route),
      ...(status === undefined ? [] : [MetricLabel.make("status", String(status))])
    ]
    labelCache.set(key, labels)
  }
  return labels
}

const maxLoggedPath = 200

/** A function that records `request` once its response is done; call it as the request arrives. */
export const make = Effect.gen(function*() {
  const { trustProxy } = yield* AppConfig
  const runSync = Runtime.runSync(yield* Effect.runtime<never>())

  return (request: NodeHttp.IncomingMessage, response: NodeHttp.ServerResponse) => {
    const started = performance.now()
    const url = request.url ?? "/"
    const query = url.indexOf("?")
    const path = query === -1 ? url : url.slice(0, query)
    const method = methods.has(request.method ?? "") ? request.method! : "OTHER"
    const client = clientAddress(request, trustProxy)
    response.once("close", () => {
      const seconds = (performance.now() - started) / 1000
      // An answer never begun: the client went away first (499, as nginx logs it).
      const status = response.headersSent ? response.statusCode : 499
      const route = routeOf(path)
      requests.unsafeUpdate(1, labelsOf(method, route, status))
      if (route !== "/events") requestDuration.unsafeUpdate(seconds, labelsOf(method, route))
      runSync(
        Effect.logInfo(`${method} ${path.slice(0, maxLoggedPath)} ${status}`).pipe(
          Effect.annotateLogs({
            method,
            path: path.slice(0, maxLoggedPath),
            status,
            durationMs: Math.round(seconds * 100_000) / 100,
            client
          })
        )
      )
    })
  }
})
