/**
 * What is recorded of every request, in one place for the HttpRouter app and the `/events`
 * handler alike (Http.ts calls it before dispatching either): one access log line once the
 * response is done — method, path without its query (which may hold a token), status, duration,
 * client address (ClientAddress.ts, with TRUST_PROXY) — and the HTTP metrics.
 *
 * An event stream's line comes once it is open (its head sent, its connection taken over from the
 * HTTP server, see Http/Takeover.ts), with the time it took to open; how long the stream lasted
 * and how it ended are EventStream's to count and log. Its duration is kept out of the duration
 * histogram, which is about answers.
 *
 * Lines are handed through a bounded queue to one fiber that writes them at most 20 times a second,
 * all those waiting at once: a request pays for a queue offer, not for a fiber of its own or a
 * wake-up of the writer (each log on a fiber of its own measured 30 µs a line; woken per line,
 * the writer cost some 60 µs more per request than the router alone). Should writing fall behind
 * by 10,000 lines, further lines are dropped and counted. ACCESS_LOG=false writes none.
 */
import { Effect, FiberRef, LogLevel, MetricBoundaries, MetricLabel, Queue } from "effect"
import type * as NodeHttp from "node:http"
import type { RequestParts } from "../Access/Request.js"
import { AppConfig } from "../Config.js"
import { counter, histogram } from "../Metrics.js"

export const requests = counter("pollcast_http_requests_total", "HTTP requests answered, by method, route and status (event streams counted once open)")
export const requestDuration = histogram("pollcast_http_request_duration_seconds", "Time from a request's arrival to the end of its answer, by method and route (not GET /events)", MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 16 }))

/**
 * The route a path belongs to, of `routes` (the served paths; `/a/:b` as `/a`): a small fixed set,
 * so that labels cannot grow with what clients send.
 */
const routeOf = (routes: ReadonlySet<string>, path: string) => {
  if (routes.has(path)) return path
  const slash = path.indexOf("/", 1)
  const parent = path.slice(0, slash)
  return slash !== -1 && routes.has(`${parent}/:`) ? parent : "other"
}

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

export const droppedLines = counter("pollcast_access_log_dropped_total", "Access log lines dropped because writing them fell 10,000 lines behind").register()

const maxLoggedPath = 200
const pendingLines = 10_000
const writeEvery = "50 millis"

interface Line {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly durationMs: number
  readonly client: string
}

const write = (line: Line) =>
  Effect.logInfo(`${line.method} ${line.path} ${line.status}`).pipe(Effect.annotateLogs({ ...line }))

/**
 * A function that records `request` once its response is done; call it as the request arrives.
 * Its lines are written for as long as the scope lasts.
 */
export const make = (routes: ReadonlyArray<string>) => Effect.gen(function*() {
  const { accessLog } = yield* AppConfig
  // "/assets/:name" is known as "/assets/:", and labelled "/assets".
  const known = new Set(routes.map((route) => route.replace(/:.*$/, ":")))
  // Under a LOG_LEVEL above info the lines would be dropped when written: not even queued then.
  const writes = accessLog && LogLevel.greaterThanEqual(LogLevel.Info, yield* FiberRef.get(FiberRef.currentMinimumLogLevel))
  // Released after the writing fiber is interrupted: the last lines are written, then the queue closed.
  const lines = yield* Effect.acquireRelease(
    Queue.dropping<Line>(pendingLines),
    (queue) =>
      Queue.takeAll(queue).pipe(Effect.flatMap((rest) => Effect.forEach(rest, write, { discard: true })), Effect.zipRight(Queue.shutdown(queue)))
  )
  yield* Queue.takeBetween(lines, 1, pendingLines).pipe(
    Effect.flatMap((taken) => Effect.forEach(taken, write, { discard: true })),
    Effect.zipRight(Effect.sleep(writeEvery)),
    Effect.forever,
    Effect.forkScoped
  )

  return (request: RequestParts, response: NodeHttp.ServerResponse) => {
    const started = performance.now()
    const path = request.path
    const method = methods.has(request.method) ? request.method : "OTHER"
    const client = request.address
    response.once("close", () => {
      const seconds = (performance.now() - started) / 1000
      // An answer never begun: the client went away first (499, as nginx logs it).
      const status = response.headersSent ? response.statusCode : 499
      const route = routeOf(known, path)
      requests.unsafeUpdate(1, labelsOf(method, route, status))
      if (route !== "/events") requestDuration.unsafeUpdate(seconds, labelsOf(method, route))
      if (!writes) return
      const line = { method, path: path.slice(0, maxLoggedPath), status, durationMs: Math.round(seconds * 100_000) / 100, client }
      if (!lines.unsafeOffer(line)) droppedLines.unsafeUpdate(1, [])
    })
  }
})
