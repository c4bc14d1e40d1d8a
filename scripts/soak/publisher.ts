/**
 * The soak's publishers: `POST /messages` to a random node at a steady rate (plus bursts), each
 * message with a unique key at the start of its body, every outcome recorded in the history. Only
 * a 201 counts as stored; a refused connection or a 4xx as certainly not stored; anything else (a
 * timeout, a connection lost, a 5xx: the insert may have committed before the node lost its
 * database) as unknown.
 */
import { Duration, Effect, Hash, Schedule } from "effect"
import type { PCGRandom } from "effect/Utils"
import * as Http from "node:http"
import type { HistoryWriter } from "./history.js"

export interface Target {
  readonly index: number
  readonly url: string
}

const requestTimeoutMillis = 5000
/** Requests in flight at most; beyond it the publisher skips ahead (and counts what it skipped). */
export const maxInFlight = 1000

const words = ["soak", "pollcast", "é", "✓", "😀", "\"quoted\"", "back\\slash", "line\nbreak", "cr\r\nlf", "tab\t", "<b>html</b>", "data: x", "id: 1"]

/** A message body: the key, then some words that SSE and JSON must carry unchanged; one in ten is long. */
export const body = (key: string, random: PCGRandom) => {
  const parts = [key]
  const length = random.number() < 0.1 ? 1000 + random.integer(3000) : 10 + random.integer(300)
  let size = key.length
  while (size < length) {
    const word = words[random.integer(words.length)]!
    parts.push(word)
    size += word.length + 1
  }
  return parts.join(" ")
}

/** The key of a message, from its body. */
export const keyOf = (text: string) => {
  const space = text.indexOf(" ")
  return space === -1 ? text : text.slice(0, space)
}

export class Publisher {
  private sequence = 0
  private inFlight = 0
  private extraRate = 0
  private credit = 0
  private lastTick = 0
  private readonly pending = new Set<Promise<void>>()
  private readonly agents: Map<number, Http.Agent>
  skipped = 0
  accepted = 0
  /** Ids answered with 201, about one a second: resume-old picks its starting point here. */
  readonly acknowledged: Array<{ readonly at: number; readonly id: string }> = []

  constructor(
    private readonly targets: ReadonlyArray<Target>,
    private readonly channels: ReadonlyArray<string>,
    private readonly rate: number,
    private readonly random: PCGRandom,
    private readonly history: HistoryWriter,
    private readonly now: () => number
  ) {
    this.agents = new Map(targets.map((target) => [target.index, new Http.Agent({ keepAlive: true, maxSockets: 64 })]))
  }

  /** Publishes at the steady rate (plus any burst) until interrupted. */
  readonly run = Effect.suspend(() => {
    this.lastTick = this.now()
    return Effect.sync(() => this.tick()).pipe(Effect.repeat(Schedule.spaced("10 millis")), Effect.asVoid)
  })

  /** Adds `rate` messages a second for `duration`; answers how many were sent in all meanwhile. */
  burst(rate: number, duration: Duration.DurationInput) {
    return Effect.acquireUseRelease(
      Effect.sync(() => {
        this.extraRate += rate
        return this.sequence
      }),
      () => Effect.sleep(duration),
      () => Effect.sync(() => (this.extraRate -= rate))
    ).pipe(Effect.zipRight(Effect.sync(() => this.sequence)))
  }

  /** Waits for every request in flight to be answered or to time out. */
  readonly drain = Effect.promise(() => Promise.all(this.pending)).pipe(Effect.asVoid)

  get sent() {
    return this.sequence
  }

  close() {
    for (const agent of this.agents.values()) agent.destroy()
  }

  private tick() {
    const now = this.now()
    this.credit += ((now - this.lastTick) / 1000) * (this.rate + this.extraRate)
    this.lastTick = now
    while (this.credit >= 1) {
      this.credit--
      if (this.inFlight >= maxInFlight) this.skipped++
      else this.send()
    }
  }

  private send() {
    const key = `p${++this.sequence}`
    const channel = this.channels[this.random.integer(this.channels.length)]!
    const target = this.targets[this.random.integer(this.targets.length)]!
    const text = body(key, this.random)
    const payload = JSON.stringify({ channel, author: "soak", body: text })
    const start = this.now()
    this.inFlight++
    const done = new Promise<void>((resolve) => {
      let settled = false
      const finish = (outcome: "acked" | "unknown" | "refused", details: { id?: string; status?: number; error?: string }) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.inFlight--
        this.history.write({
          _tag: "write",
          src: "post",
          key,
          ch: channel,
          h: Hash.string(text),
          start,
          end: this.now(),
          outcome,
          node: target.index,
          ...details
        })
        resolve()
      }
      const request = Http.request(`${target.url}/messages`, {
        method: "POST",
        agent: this.agents.get(target.index)!,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
      }, (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("error", () => finish("unknown", { status: response.statusCode ?? 0, error: "response broken" }))
        response.on("end", () => {
          const status = response.statusCode ?? 0
          // A 4xx refuses the message outright; a 5xx may come after the insert committed.
          if (status !== 201) return finish(status >= 400 && status < 500 ? "refused" : "unknown", { status })
          try {
            const id = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { id: string }).id
            this.accepted++
            const last = this.acknowledged[this.acknowledged.length - 1]
            if (last === undefined || this.now() - last.at >= 1000) this.acknowledged.push({ at: this.now(), id })
            finish("acked", { id, status })
          } catch {
            finish("unknown", { status, error: "unreadable 201 body" })
          }
        })
      })
      const timer = setTimeout(() => {
        finish("unknown", { error: "timeout" })
        request.destroy()
      }, requestTimeoutMillis)
      request.on("error", (error: NodeJS.ErrnoException) =>
        finish(error.code === "ECONNREFUSED" ? "refused" : "unknown", { error: error.code ?? error.message })
      )
      request.end(payload)
    }).finally(() => this.pending.delete(done))
    this.pending.add(done)
  }
}
