/**
 * Publishes messages at a steady rate, each body carrying its send time and a sequence number:
 * `t=<epoch ms>;s=<n>;` padded to a realistic length. Through POST /messages, or (with
 * `databaseUrl`) as plain SQL INSERTs, one statement and transaction each, as other systems write.
 */
import * as Http from "node:http"
import pg from "pg"
import { PCGRandom } from "effect/Utils"
import { Histogram } from "./statistics.js"

export interface Published {
  /** Messages accepted (201), by channel: how many and the sum of their sequence numbers. */
  readonly byChannel: Map<string, { count: number; sequenceSum: number }>
  readonly accepted: number
  readonly failed: number
  readonly firstAt: number
  readonly lastAt: number
  /** Accepted messages per second over the publishing window. */
  readonly rate: number
  /** Time from sending a POST to its 201 (or an INSERT to its completion). */
  readonly postLatency: Histogram
}

const now = () => performance.timeOrigin + performance.now()
const bodyLength = 100
let sequence = 0

export const publish = async (options: {
  readonly url: string
  /** Sent with every POST (an Authorization header, say). */
  readonly headers?: Readonly<Record<string, string>>
  readonly rate: number
  readonly seconds: number
  readonly channelOf: (sequence: number) => string
  /** INSERT into this database instead of POSTing to `url`. */
  readonly databaseUrl?: string | undefined
  /**
   * Send at random times (a Poisson process at `rate`, this seed choosing the times) instead of
   * evenly spaced: with polls at fixed times, each message then waits a uniformly random part of
   * the interval, whatever the phase between this process's timers and the server's.
   */
  readonly poissonSeed?: number | undefined
}): Promise<Published> => {
  // Many publishers at once, as a busy service sees them: with few connections (32 was tried) the
  // publisher itself caps the rate, at connections / round trip, before either server does.
  const agent = new Http.Agent({ keepAlive: true, maxSockets: 128 })
  const pool = options.databaseUrl === undefined ? undefined : new pg.Pool({ connectionString: options.databaseUrl, max: 16 })
  const target = new URL("/messages", options.url)
  const byChannel = new Map<string, { count: number; sequenceSum: number }>()
  let accepted = 0
  let failed = 0
  let inFlight = 0
  let lastAt = 0
  const pending = new Set<Promise<void>>()
  const postLatency = new Histogram()

  /** Stores one message; resolves whether it was accepted. */
  const store = (channel: string, body: string): Promise<boolean> =>
    pool !== undefined
      ? pool.query("INSERT INTO messages (channel, author, body) VALUES ($1, 'bench', $2)", [channel, body]).then(
        () => true,
        () => false
      )
      : new Promise((resolve) => {
        const json = JSON.stringify({ channel, author: "bench", body })
        const request = Http.request(target, {
          method: "POST",
          agent,
          headers: { ...options.headers, "content-type": "application/json", "content-length": Buffer.byteLength(json) }
        }, (response) => {
          response.resume()
          response.on("end", () => resolve(response.statusCode === 201))
        })
        request.on("error", () => resolve(false))
        request.end(json)
      })

  const send = (seq: number) => {
    const channel = options.channelOf(seq)
    const head = `t=${now().toFixed(3)};s=${seq};`
    const body = head + "x".repeat(Math.max(0, bodyLength - head.length))
    inFlight++
    const sentAt = now()
    const done = store(channel, body).then((stored) => {
      if (stored) {
        accepted++
        lastAt = now()
        postLatency.record(lastAt - sentAt)
        const entry = byChannel.get(channel) ?? { count: 0, sequenceSum: 0 }
        entry.count++
        entry.sequenceSum += seq
        byChannel.set(channel, entry)
      } else {
        failed++
      }
    }).finally(() => {
      inFlight--
      pending.delete(done)
    })
    pending.add(done)
  }

  const finish = async (firstAt: number): Promise<Published> => {
    await Promise.all(pending)
    agent.destroy()
    await pool?.end()
    const seconds = Math.max(0.001, (lastAt - firstAt) / 1000)
    return { byChannel, accepted, failed, firstAt, lastAt, rate: accepted / seconds, postLatency }
  }

  const firstAt = now()
  if (options.poissonSeed !== undefined) {
    const random = new PCGRandom(options.poissonSeed)
    let at = 0
    await new Promise<void>((resolve) => {
      const next = () => {
        at += (-Math.log(1 - random.number()) / options.rate) * 1000
        if (at >= options.seconds * 1000) return resolve()
        setTimeout(() => {
          send(++sequence)
          next()
        }, Math.max(0, firstAt + at - now()))
      }
      next()
    })
    return finish(firstAt)
  }
  const total = Math.round(options.rate * options.seconds)
  let sent = 0
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((now() - firstAt) / 1000) * options.rate))
      // A publisher that cannot keep up skips ahead rather than queue without bound: the
      // achieved rate then shows it.
      while (sent < due && inFlight < 512) {
        send(++sequence)
        sent++
      }
      if (sent < due) sent = due
      if (sent >= total) {
        clearInterval(tick)
        resolve()
      }
    }, 5)
  })
  return finish(firstAt)
}

