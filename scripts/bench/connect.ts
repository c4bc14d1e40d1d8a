/**
 * `npm run bench:connect`: what opening an event stream costs, with access control off and on.
 * Starts one node (compiled dist/main.js, its own embedded PostgreSQL) per mode and opens streams
 * over raw sockets: 200 one at a time, then 3,000 with 256 in flight, printing the time to the
 * answer's first bytes. Modes: `off` (no key), `token` (AUTH_SECRET; every stream presents the
 * same token, as one client reconnecting would), `tokens` (a token of its own per stream, so every
 * one is checked). `--modes off,token,tokens` (default: all); `--streams N` opened with 256 in
 * flight (default 3,000; this process holds them all, so keep it under the open-file limit).
 */
import * as Net from "node:net"
import { argument, numberArgument } from "../support/arguments.js"
import { build, startService } from "../support/ServiceProcess.js"
import * as Tokens from "../support/Tokens.js"
import { percentile } from "./statistics.js"

const secret = "connect-bench-secret-of-at-least-32-characters"
const sign = (subject: string) => Tokens.mint(Tokens.secretKey(secret), { subscribe: ["*"] }, { subject, expiresIn: "1h" })
const modes = (argument("modes") ?? "off,token,tokens").split(",")
const sequential = 200
const concurrent = numberArgument("streams", 3000)
const inFlight = 256

build()
for (const mode of modes) {
  const tokens = mode === "off" ? [] : mode === "token"
    ? [await sign("bench")]
    : await Promise.all(Array.from({ length: sequential + concurrent }, (_, i) => sign(`client-${i}`)))
  const service = await startService({
    HEARTBEAT_INTERVAL: "1 hour",
    LOG_LEVEL: "Info",
    ACCESS_LOG: "false",
    // No limits unless the environment sets them (it passes through to the node).
    PUBLISH_RATE: process.env.PUBLISH_RATE ?? "0",
    MAX_STREAMS: process.env.MAX_STREAMS ?? "0",
    MAX_STREAMS_PER_CLIENT: process.env.MAX_STREAMS_PER_CLIENT ?? "0",
    MAX_CONNECTIONS_PER_CLIENT: process.env.MAX_CONNECTIONS_PER_CLIENT ?? "0",
    ...(mode === "off" ? {} : { AUTH_SECRET: secret })
  })
  const port = Number(new URL(service.url).port)
  const sockets: Array<Net.Socket> = []
  let opened = 0
  const open = () =>
    new Promise<number>((resolve) => {
      const token = tokens.length === 0 ? undefined : tokens[opened++ % tokens.length]
      const started = performance.now()
      const socket = Net.connect({ host: "127.0.0.1", port }, () =>
        socket.write(
          `GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n` +
            (token === undefined ? "" : `Authorization: Bearer ${token}\r\n`) + "\r\n"
        ))
      socket.once("data", () => resolve(performance.now() - started))
      sockets.push(socket)
    })
  const milliseconds = (values: Array<number>, fraction: number) => percentile(values.sort((a, b) => a - b), fraction).toFixed(2)
  const one: Array<number> = []
  for (let i = 0; i < sequential; i++) one.push(await open())
  const many: Array<number> = []
  const started = performance.now()
  let next = 0
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next++ < concurrent) many.push(await open())
  }))
  const seconds = (performance.now() - started) / 1000
  console.log(
    `${mode.padEnd(6)}  one at a time: p50 ${milliseconds(one, 0.5)} ms, p99 ${milliseconds(one, 0.99)} ms;  ` +
      `${concurrent} with ${inFlight} in flight: ${seconds.toFixed(2)} s, p50 ${milliseconds(many, 0.5)} ms, p99 ${milliseconds(many, 0.99)} ms`
  )
  for (const socket of sockets) socket.destroy()
  await service.stop()
}
