/**
 * `GET /healthz` (the process answers, and can go on without a restart), `GET /readyz` (the database answers, the poller has
 * polled recently, and the latest write did not fail within the last 30 s, else 503), both open
 * to all; `GET /metrics` (every metric, in Prometheus' text
 * format) and `GET /stats` (this node's figures as JSON, for people and scripts), both for tokens
 * with the admin claim once access control is on. Both of the last say
 * whether wake-up is listening; without it delivery keeps to POLL_INTERVAL, slower but whole, so it
 * does not make a node unready.
 */
import { HttpApiBuilder, type HttpServerRequest } from "@effect/platform"
import { Clock, Duration, Effect, Option } from "effect"
import type * as Api from "../Api.js"
import { Broadcast } from "../Delivery/Broadcast.js"
import { AppConfig } from "../Config.js"
import { EventStream } from "../Delivery/EventStream.js"
import { MessageRepo } from "../Storage/MessageRepo.js"
import { Poller } from "../Delivery/Poller.js"
import { Wakeups } from "../Delivery/Wakeups.js"
import { Telemetry } from "../Telemetry.js"
import { RequestPolicy } from "../Access/RequestPolicy.js"
import * as Request from "./Request.js"

export const group = (api: Api.Routed) =>
  HttpApiBuilder.group(api, "operations", (handlers) =>
    Effect.gen(function*() {
      const { pollInterval } = yield* AppConfig
      const repo = yield* MessageRepo
      const poller = yield* Poller
      const broadcast = yield* Broadcast
      const eventStream = yield* EventStream
      const wakeups = yield* Wakeups
      const policy = yield* RequestPolicy
      const telemetry = yield* Telemetry
      // A poll is overdue once three intervals have passed without one, plus room for a slow query.
      const stalePollAfter = Duration.toMillis(Duration.sum(Duration.times(pollInterval, 3), Duration.seconds(5)))
      // A node whose writes fail (a full disk: reads and pings go on) cannot take messages: not ready
      // until a write succeeds, or for this long after the latest failure, since a node taken out of
      // its balancer's rotation may see no write to try again with.
      const failedWriteFor = 30_000

      // Alive unless only a restart helps (the database was replaced under the node).
      const liveness = Effect.flatMap(poller.status, (status) =>
        Option.match(status.restartNeeded, {
          onNone: () => Effect.succeed({ status: "ok" as const }),
          onSome: (reason) => Effect.fail({ status: "restart needed" as const, reason })
        }))

      const readiness = Effect.gen(function*() {
        const database = yield* repo.ping.pipe(
          Effect.timeout("2 seconds"),
          Effect.match({ onFailure: () => false, onSuccess: () => true })
        )
        const status = yield* poller.status
        const now = yield* Clock.currentTimeMillis
        const lastPollMillisAgo = now - status.lastSuccessAt
        const polling = lastPollMillisAgo <= stalePollAfter
        const writing = Option.match(yield* repo.failingWrite, {
          onNone: () => true,
          onSome: (failure) => now - failure.at > failedWriteFor
        })
        const ready = database && polling && writing && Option.isNone(status.restartNeeded)
        const readiness = {
          status: ready ? "ready" as const : "unavailable" as const,
          database: database ? "reachable" as const : "unreachable" as const,
          poller: polling ? "polling" as const : "overdue" as const,
          writes: writing ? "succeeding" as const : "failing" as const,
          lastPollMillisAgo,
          wakeup: (yield* wakeups.status).state
        }
        return ready ? readiness : yield* Effect.fail(readiness)
      })

      const operator = (request: HttpServerRequest.HttpServerRequest) =>
        Effect.flatMap(Request.partsOf(request), policy.operator)

      return handlers
        .handle("healthz", () => liveness)
        .handle("readyz", () => readiness)
        .handle("stats", ({ request }) =>
          Effect.gen(function*() {
            yield* operator(request)
            const status = yield* poller.status
            return {
              clients: yield* eventStream.connections,
              subscribers: yield* broadcast.subscribers,
              position: yield* broadcast.position,
              polls: status.polls,
              probes: status.probes,
              lastPollAt: new Date(status.lastSuccessAt).toISOString(),
              consecutivePollFailures: status.consecutiveFailures,
              wakeup: yield* wakeups.status,
              limits: yield* policy.figures
            }
          }))
        .handle("metrics", ({ request }) => Effect.zipRight(operator(request), telemetry.scrape))
    }))
