/**
 * What a connection may hold before it has sent a request, for every route alike: it acts on the
 * server's sockets, before the router or the `/events` handler sees anything.
 *
 * - A connection that has not sent a complete request head within FIRST_REQUEST_TIMEOUT is closed.
 *   Node's own limit is its headersTimeout (66 s here), checked every 30 s: 1,100 sockets opened
 *   and left silent from one address held 1,100 open files for over a minute, and with the
 *   open-file limit at 1,024 every other request failed meanwhile.
 * - One client address (an IPv6 one by its /64) holds at most MAX_CONNECTIONS_PER_CLIENT open
 *   connections, when clients connect directly (TRUST_PROXY=0). Behind proxies every connection
 *   comes from a proxy, which holds one per client stream: the proxy's own limits apply there.
 *
 * Both are counted (pollcast_connections_closed_total) and summed up in one log line per 10 s
 * at most, never a line per socket. Plain Node listeners and timers, as in Http/Events.ts: they run
 * once per connection, on the path every client takes.
 */
import { Duration, Effect, MetricLabel, Schedule } from "effect"
import type * as NodeHttp from "node:http"
import * as Net from "node:net"
import { AppConfig } from "../Config.js"
import { limitKey } from "../Access/Admission.js"
import { canonical } from "./ClientAddress.js"
import { counter } from "../Metrics.js"

export const connectionsClosed = counter("pollcast_connections_closed_total", "Connections closed by the node before their first request, by reason: silent (no request within FIRST_REQUEST_TIMEOUT), crowded (the address already had MAX_CONNECTIONS_PER_CLIENT open)").register()

const silentLabel = [MetricLabel.make("reason", "silent")]
const crowdedLabel = [MetricLabel.make("reason", "crowded")]

const addressOf = (socket: Net.Socket) => {
  const address = socket.remoteAddress ?? ""
  return Net.isIP(address) === 0 ? address : limitKey(canonical(address))
}

export const guard = (server: NodeHttp.Server) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const firstRequestTimeout = Duration.toMillis(config.firstRequestTimeout)
    const perClient = config.trustProxy === 0 ? config.limits.maxConnectionsPerClient : 0
    const openByAddress = new Map<string, number>()
    const awaitingRequest = new Map<Net.Socket, NodeJS.Timeout>()
    let silent = 0
    let crowded = 0

    const onConnection = (socket: Net.Socket) => {
      const address = addressOf(socket)
      const open = (openByAddress.get(address) ?? 0) + 1
      if (perClient > 0 && open > perClient) {
        crowded++
        connectionsClosed.unsafeUpdate(1, crowdedLabel)
        socket.destroy()
        return
      }
      openByAddress.set(address, open)
      const timer = setTimeout(() => {
        silent++
        connectionsClosed.unsafeUpdate(1, silentLabel)
        socket.destroy()
      }, firstRequestTimeout)
      awaitingRequest.set(socket, timer)
      socket.on("close", closedFrom(address))
    }
    // "close" comes once. The listener sees only the address (the socket is `this`).
    const closedFrom = (address: string) =>
      function(this: Net.Socket) {
        clearTimeout(awaitingRequest.get(this))
        awaitingRequest.delete(this)
        const left = openByAddress.get(address)! - 1
        if (left === 0) openByAddress.delete(address)
        else openByAddress.set(address, left)
      }
    const onRequest = (request: NodeHttp.IncomingMessage) => {
      const timer = awaitingRequest.get(request.socket)
      if (timer === undefined) return
      clearTimeout(timer)
      awaitingRequest.delete(request.socket)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        server.on("connection", onConnection)
        server.on("request", onRequest)
      }),
      () =>
        Effect.sync(() => {
          server.off("connection", onConnection)
          server.off("request", onRequest)
          for (const timer of awaitingRequest.values()) clearTimeout(timer)
        })
    )

    const report = Effect.suspend(() => {
      const counts = { silent, crowded }
      silent = 0
      crowded = 0
      if (counts.silent === 0 && counts.crowded === 0) return Effect.void
      const parts = [
        ...(counts.silent > 0 ? [`closed ${counts.silent} that sent no request within FIRST_REQUEST_TIMEOUT`] : []),
        ...(counts.crowded > 0 ? [`refused ${counts.crowded} from addresses that had MAX_CONNECTIONS_PER_CLIENT open`] : [])
      ]
      return Effect.logWarning(`Connections in the last 10 s: ${parts.join("; ")}`)
    })
    yield* report.pipe(Effect.repeat(Schedule.spaced("10 seconds")), Effect.forkScoped)
  })
