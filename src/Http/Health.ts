/**
 * `GET /healthz` (the process answers, and can go on without a restart), `GET /readyz` (the database answers, the poller has
 * polled recently, and the latest write did not fail within the last 30 s, else 503), both open
 * to all; `GET /metrics` (every metric, in Prometheus' text
 * format) and `GET /stats` (this node's figures as JSON, for people and scripts), both for tokens
 * with the admin claim once access control is on. Both of the last say
 * whether wake-up is listening; without it delivery keeps to POLL_INTERVAL, slower but whole, so it
 * does not make a node unready. Every answer is the node's, over all its processes (NodeStatus).
 */
import { HttpApiBuilder, type HttpServerRequest } from "@effect/platform"
import { Clock, Duration, Effect, Option } from "effect"
import type * as Api from "../Api.js"
import { AppConfig } from "../Config.js"
import { NodeStatus } from "../Cluster/NodeStatus.js"
import { MessageRepo } from "../Storage/MessageRepo.js"
import { RequestPolicy } from "../Access/RequestPolicy.js"
import * as Request from "./Request.js"

export const group = (api: Api.Routed) =>
  HttpApiBuilder.group(api, "operations", (handlers) =>
    Effect.gen(function*() {
      const { pollInterval } = yield* AppConfig
      const repo = yield* MessageRepo
      const node = yield* NodeStatus
      const policy = yield* RequestPolicy
      // A poll is overdue once three intervals have passed without one, plus room for a slow query.
      const stalePollAfter = Duration.toMillis(Duration.sum(Duration.times(pollInterval, 3), Duration.seconds(5)))
      // A node whose writes fail (a full disk: reads and pings go on) cannot take messages: not ready
      // until a write succeeds, or for this long after the latest failure, since a node taken out of
      // its balancer's rotation may see no write to try again with.
      const failedWriteFor = 30_000

      // Alive unless only a restart helps (the database was replaced under the node).
      const liveness = Effect.flatMap(node.polling, ({ poller }) =>
        Option.match(poller.restartNeeded, {
          onNone: () => Effect.succeed({ status: "ok" as const }),
          onSome: (reason) => Effect.fail({ status: "restart needed" as const, reason })
        }))

      const readiness = Effect.gen(function*() {
        const database = yield* repo.ping.pipe(
          Effect.timeout("2 seconds"),
          Effect.match({ onFailure: () => false, onSuccess: () => true })
        )
        const { poller, wakeup } = yield* node.polling
        const now = yield* Clock.currentTimeMillis
        const lastPollMillisAgo = now - poller.lastSuccessAt
        const polling = lastPollMillisAgo <= stalePollAfter
        // Any of the node's processes whose latest write failed lately.
        const writing = (yield* node.processes).every((process) =>
          process.writeFailedAt === undefined || now - process.writeFailedAt > failedWriteFor
        )
        const ready = database && polling && writing && Option.isNone(poller.restartNeeded)
        const readiness = {
          status: ready ? "ready" as const : "unavailable" as const,
          database: database ? "reachable" as const : "unreachable" as const,
          poller: polling ? "polling" as const : "overdue" as const,
          writes: writing ? "succeeding" as const : "failing" as const,
          lastPollMillisAgo,
          wakeup: wakeup.state
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
            const { poller, wakeup } = yield* node.polling
            const processes = yield* node.processes
            const sum = (figure: (process: typeof processes[number]) => number) =>
              processes.reduce((total, process) => total + figure(process), 0)
            return {
              clients: sum((process) => process.clients),
              subscribers: sum((process) => process.subscribers),
              // What every process has fanned out through.
              position: processes.reduce((lowest, process) => process.position < lowest ? process.position : lowest, poller.position),
              polls: poller.polls,
              probes: poller.probes,
              lastPollAt: new Date(poller.lastSuccessAt).toISOString(),
              consecutivePollFailures: poller.consecutiveFailures,
              wakeup,
              limits: yield* policy.figures,
              processes: processes.map(({ clients, memory, name, pid }) => ({ name, pid, clients, memory }))
            }
          }))
        .handle("metrics", ({ request }) => Effect.zipRight(operator(request), node.scrape))
    }))
