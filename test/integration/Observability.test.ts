/**
 * What an operator sees of a node: /metrics moving as users act, the admin claim guarding it, one
 * access line per request, and, with OTEL_EXPORTER_OTLP_ENDPOINT, the spans of a POST, a poll and
 * an event stream's opening.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as OtlpReceiver from "../support/OtlpReceiver.js"
import { scrape } from "../support/Scrape.js"
import * as SseClient from "../support/SseClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"
import * as Tokens from "../support/Tokens.js"

const post = (node: TestNode.TestNode, body: unknown, path = "/messages", headers: Record<string, string> = {}) =>
  Effect.promise(() =>
    fetch(node.url(path), {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body)
    }).then((response) => response.status)
  )

const metricsOf = (node: TestNode.TestNode) => scrape(node.url("/metrics"))

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("observability", (it) => {
  describe("GET /metrics", () => {
    it.scoped("counts a POST, a stream opened and closed, and polls, as a user's actions make them move", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const before = yield* metricsOf(node)
        expect(before.metrics["pollcast_polls_total"]?.type).toBe("counter")
        expect(before.metrics["pollcast_event_streams_open"]?.type).toBe("gauge")
        expect(before.metrics["pollcast_poll_duration_seconds"]?.type).toBe("histogram")

        // A stream opened: the gauge and the counter move.
        const scope = yield* Scope.make()
        const client = yield* SseClient.connected(node.url("/events?channel=metrics")).pipe(Scope.extend(scope))
        const open = yield* SseClient.eventually(
          metricsOf(node),
          (now) => now.value("pollcast_event_streams_open") === before.value("pollcast_event_streams_open") + 1,
          "5 seconds",
          "the open streams gauge to count the stream"
        )
        expect(open.value("pollcast_event_streams_opened_total")).toBe(before.value("pollcast_event_streams_opened_total") + 1)

        // A POST: counted by status, timed, fanned out (with its lag) and written to the client.
        expect(yield* post(node, { channel: "metrics", body: "counted" })).toBe(201)
        yield* client.waitUntil(() => client.messages.length === 1)
        const posted = { method: "POST", route: "/messages", status: "201" }
        const after = yield* SseClient.eventually(
          metricsOf(node),
          (now) => now.value("pollcast_fanout_messages_total") > before.value("pollcast_fanout_messages_total"),
          "5 seconds",
          "the fan-out to count the message"
        )
        expect(after.value("pollcast_http_requests_total", posted)).toBe(before.value("pollcast_http_requests_total", posted) + 1)
        expect(after.count("pollcast_http_request_duration_seconds", { method: "POST", route: "/messages" }))
          .toBe(before.count("pollcast_http_request_duration_seconds", { method: "POST", route: "/messages" }) + 1)
        expect(after.count("pollcast_delivery_lag_seconds")).toBeGreaterThan(before.count("pollcast_delivery_lag_seconds"))
        expect(after.value("pollcast_stream_bytes_written_total", { kind: "live" }))
          .toBeGreaterThan(before.value("pollcast_stream_bytes_written_total", { kind: "live" }))
        // Polls go on by themselves (POLL_INTERVAL 50 ms here), each timed and its rows counted.
        expect(after.value("pollcast_polls_total")).toBeGreaterThan(before.value("pollcast_polls_total"))
        expect(after.count("pollcast_poll_duration_seconds")).toBeGreaterThan(before.count("pollcast_poll_duration_seconds"))
        expect(after.count("pollcast_poll_rows")).toBeGreaterThan(before.count("pollcast_poll_rows"))
        expect(after.value("pollcast_wakeup_listening")).toBeGreaterThanOrEqual(1)

        // The stream closed by the client: gone from the gauge, counted as closed.
        yield* Scope.close(scope, Exit.void)
        const closed = yield* SseClient.eventually(
          metricsOf(node),
          (now) => now.value("pollcast_event_streams_open") === before.value("pollcast_event_streams_open"),
          "5 seconds",
          "the stream to leave the gauge"
        )
        expect(closed.value("pollcast_event_streams_ended_total", { reason: "closed" }))
          .toBe(before.value("pollcast_event_streams_ended_total", { reason: "closed" }) + 1)
        const streamed = { method: "GET", route: "/events", status: "200" }
        expect(closed.value("pollcast_http_requests_total", streamed)).toBe(before.value("pollcast_http_requests_total", streamed) + 1)
      }))

    it.scoped("counts a replay page for a client resuming, and a refused POST by its status", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const before = yield* metricsOf(node)
        const first = yield* Effect.promise(() =>
          fetch(node.url("/messages"), {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ channel: "replayed", body: "one" })
          }).then((response) => response.json() as Promise<{ id: string }>)
        )
        expect(yield* post(node, { channel: "replayed", body: "two" })).toBe(201)
        expect(yield* post(node, { channel: "no spaces allowed", body: "x" })).toBe(400)
        yield* SseClient.eventually(metricsOf(node), (now) => now.value("pollcast_fanout_messages_total") >= before.value("pollcast_fanout_messages_total") + 2)
        const resumed = yield* SseClient.connected(node.url("/events?channel=replayed"), { lastEventId: first.id })
        yield* resumed.waitUntil(() => resumed.messages.length === 1)
        const after = yield* metricsOf(node)
        expect(after.value("pollcast_replay_pages_total")).toBe(before.value("pollcast_replay_pages_total") + 1)
        expect(after.value("pollcast_stream_bytes_written_total", { kind: "replay" }))
          .toBeGreaterThan(before.value("pollcast_stream_bytes_written_total", { kind: "replay" }))
        const refused = { method: "POST", route: "/messages", status: "400" }
        expect(after.value("pollcast_http_requests_total", refused)).toBe(before.value("pollcast_http_requests_total", refused) + 1)
      }))

    it.scoped("needs a token with the admin claim once access control is on", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        const status = (headers: Record<string, string>) =>
          Effect.promise(() => fetch(node.url("/metrics"), { headers }).then((response) => response.status))
        expect(yield* status({})).toBe(401)
        const member = yield* Effect.promise(() => Tokens.hs256({ subscribe: ["*"] }))
        expect(yield* status({ authorization: `Bearer ${member}` })).toBe(403)
        const admin = yield* Effect.promise(() => Tokens.hs256({ admin: true }))
        const scraped = yield* scrape(node.url("/metrics"), { authorization: `Bearer ${admin}` })
        expect(scraped.metrics["pollcast_polls_total"]).toBeDefined()
      }))
  })

  describe("logs", () => {
    it.scoped("writes one access line per request, for the router and /events alike, never with the query", () =>
      Effect.gen(function*() {
        const logs: Array<string> = []
        const node = yield* TestNode.start({}, { logs })
        expect(yield* post(node, { body: "logged" }, "/messages?access_token=secret-in-the-url")).toBe(201)
        const scope = yield* Scope.make()
        yield* SseClient.connected(node.url("/events?channel=logged&access_token=another-secret")).pipe(Scope.extend(scope))
        // A stream's line comes once it is open, while it lasts: its connection was taken over
        // from Node's HTTP server (Http/Takeover.ts; checked on Node 20), its request done.
        yield* SseClient.waitUntil(() => logs.some((line) => line.startsWith("INFO GET /events 200")), "5 seconds", "the stream's line")
        yield* Scope.close(scope, Exit.void)
        yield* SseClient.waitUntil(() => logs.some((line) => line.startsWith("DEBUG Event stream closed")), "5 seconds", "the stream's end")
        const access = logs.filter((line) => /^INFO (GET|POST) \//.test(line))
        expect(access.filter((line) => line.startsWith("INFO POST /messages 201"))).toHaveLength(1)
        expect(access.filter((line) => line.startsWith("INFO GET /events 200"))).toHaveLength(1)
        expect(logs.join("\n")).not.toContain("secret-in-the-url")
        expect(logs.join("\n")).not.toContain("another-secret")
        expect(logs.some((line) => line.startsWith("DEBUG Event stream opened"))).toBe(true)
        expect(logs.some((line) => line.startsWith("DEBUG Event stream closed"))).toBe(true)
      }))
  })

  describe("traces", () => {
    it.scoped("exports the spans of a POST and of a poll to OTEL_EXPORTER_OTLP_ENDPOINT, the insert linked to the request", () =>
      Effect.gen(function*() {
        const receiver = yield* OtlpReceiver.start
        const node = yield* TestNode.start({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint })
        expect(yield* post(node, { channel: "traced", body: "traced" })).toBe(201)
        expect(yield* post(node, { body: "hidden" }, "/messages?access_token=never-exported")).toBe(201)
        // The batch span processor exports every 5 seconds.
        yield* SseClient.waitUntil(
          () =>
            receiver.spans.some((span) => span.name === "MessageRepo.insertAll") &&
            receiver.spans.some((span) => span.name === "MessageRepo.poll"),
          "20 seconds",
          "spans to arrive"
        )
        const request = receiver.spans.find((span) => span.name === "http.server POST" && span.attributes["url.path"] === "/messages")
        expect(request).toBeDefined()
        // A writer's fiber runs the INSERT for many requests at once: its span links to each.
        const written = receiver.spans.filter((span) => span.name === "MessageRepo.insertAll")
        expect(written.some((span) => span.links.some((link) => link.spanId === request!.spanId && link.traceId === request!.traceId)))
          .toBe(true)
        expect(receiver.bodies.join("\n")).not.toContain("never-exported")
      }))

    it.scoped("exports a span for GET /events, in the client's trace, with the replay under it", () =>
      Effect.gen(function*() {
        const receiver = yield* OtlpReceiver.start
        const node = yield* TestNode.start({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint })
        // Once a live client has both, the node is past them: a client resuming from the first
        // has the second replayed (read from the database), not delivered live.
        const watcher = yield* SseClient.connected(node.url("/events?channel=resumed"))
        expect(yield* post(node, { channel: "resumed", body: "first" })).toBe(201)
        expect(yield* post(node, { channel: "resumed", body: "second" })).toBe(201)
        yield* watcher.waitUntil(() => watcher.bodies().includes("second"))
        const history = yield* Effect.promise(() =>
          fetch(node.url("/messages?channel=resumed")).then((response) =>
            response.json() as Promise<{ messages: Array<{ id: string }> }>
          )
        )
        const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
        const client = yield* SseClient.connected(node.url("/events?channel=resumed&access_token=never-exported"), {
          lastEventId: history.messages[0]!.id,
          headers: () => ({ traceparent: `00-${traceId}-00f067aa0ba902b7-01` })
        })
        yield* client.waitUntil(() => client.bodies().includes("second"))
        // The resuming client's: it continues the trace its traceparent names.
        const isEvents = (span: OtlpReceiver.ReceivedSpan) =>
          span.name === "http.server GET" && span.attributes["url.path"] === "/events" && span.traceId === traceId
        yield* SseClient.waitUntil(() => receiver.spans.some(isEvents), "20 seconds", "the stream's span to arrive")
        const events = receiver.spans.find(isEvents)!
        expect(events.parentSpanId).toBe("00f067aa0ba902b7")
        expect(events.attributes["http.response.status_code"]).toBe(200)
        yield* SseClient.waitUntil(
          () => receiver.spans.some((span) => span.name.startsWith("MessageRepo.") && span.parentSpanId === events.spanId),
          "20 seconds",
          "the replay's query under the stream's span"
        )
        expect(receiver.bodies.join("\n")).not.toContain("never-exported")
      }))
  })
})
