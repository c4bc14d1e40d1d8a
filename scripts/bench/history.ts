/**
 * What history and replay over several channels cost on a large table. `npm run bench:history
 * [-- --rows 2000000] [--compare DIR]` stores `--rows` messages on one busy channel after a few
 * on a rare one, then times, on this build (and on the build in DIR, another checkout after
 * `npm run build`, serving the same database):
 * - GET /messages (the newest page) for one channel, for the rare one and one with nothing, and for
 *   100 channels with nothing;
 * - a replay from the beginning (GET /events with Last-Event-ID) of the rare channel and one with
 *   nothing, until its last message arrives;
 * - POST /messages latency while 20 clients read that two-channel history in a loop.
 * Each figure is the median of 5 tries (the POSTs: p50 / p99 over 5 seconds).
 */
import * as Path from "node:path"
import pg from "pg"
import { beginning, messageId } from "../../src/Domain/Message.js"
import { checkoutArgument, numberArgument } from "../support/arguments.js"
import { build, type RunningService, startService } from "../support/ServiceProcess.js"
import { Histogram, middleOf } from "./statistics.js"

const rows = numberArgument("rows", 2_000_000)
const compare = checkoutArgument("compare")
const rareCount = 5
const settings = { POLL_INTERVAL: "1 second", PUBLISH_RATE: "0", MAX_STREAMS_PER_CLIENT: "0", LOG_LEVEL: "Info", ACCESS_LOG: "false" }

const timed = async (run: () => Promise<unknown>) => {
  const started = performance.now()
  await run()
  return performance.now() - started
}
const medianOf5 = async (run: () => Promise<unknown>) => {
  const times: Array<number> = []
  for (let attempt = 0; attempt < 5; attempt++) times.push(await timed(run))
  return middleOf(times)
}

const getJson = async (url: string) => {
  const response = await fetch(url)
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`)
  return response.json()
}

/** Reads /events from the beginning until `count` messages have arrived. */
const replay = async (url: string, count: number) => {
  const controller = new AbortController()
  const response = await fetch(url, { headers: { "last-event-id": beginning }, signal: controller.signal })
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  while ((text.match(/^event: message$/gm) ?? []).length < count) {
    const chunk = await reader.read()
    if (chunk.done) throw new Error("the stream ended during its replay")
    text += decoder.decode(chunk.value, { stream: true })
  }
  controller.abort()
}

const postsUnderReaders = async (service: RunningService, readers: number, seconds: number) => {
  const latencies = new Histogram()
  const until = performance.now() + seconds * 1000
  const reader = async () => {
    while (performance.now() < until) await getJson(`${service.url}/messages?channel=rare&channel=nothing`)
  }
  const poster = async () => {
    while (performance.now() < until) {
      latencies.record(await timed(() =>
        fetch(`${service.url}/messages`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ channel: "posts", body: "timed" })
        }).then((response) => response.text())
      ))
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  await Promise.all([poster(), ...Array.from({ length: readers }, reader)])
  return `${latencies.percentile(0.5).toFixed(1)} / ${latencies.percentile(0.99).toFixed(1)} ms`
}

/** Waits until the node's poller has read every stored row, so that nothing else runs while timing. */
const caughtUp = async (service: RunningService, head: string) => {
  for (;;) {
    const stats = (await getJson(`${service.url}/stats`)) as { readonly position: string }
    if (stats.position >= head) return
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}

const measure = async (service: RunningService) => {
  const unknown100 = Array.from({ length: 100 }, (_, index) => `channel=unknown-${index}`).join("&")
  return {
    "history, 1 channel (rare)": await medianOf5(() => getJson(`${service.url}/messages?channel=rare`)),
    "history, rare + nothing": await medianOf5(() => getJson(`${service.url}/messages?channel=rare&channel=nothing`)),
    "history, 100 channels with nothing": await medianOf5(() => getJson(`${service.url}/messages?${unknown100}`)),
    "replay from the start, 1 channel (rare)": await medianOf5(() => replay(`${service.url}/events?channel=rare`, rareCount)),
    "replay from the start, rare + nothing": await medianOf5(() =>
      replay(`${service.url}/events?channel=rare&channel=nothing`, rareCount)
    ),
    "POST p50 / p99 with 20 such history readers": await postsUnderReaders(service, 20, 5)
  }
}

build()
const pollcast = await startService(settings)
const client = new pg.Client({ connectionString: pollcast.databaseUrl })
await client.connect()
console.log(`Storing ${rareCount} messages on "rare", then ${rows.toLocaleString("en")} on "busy"…`)
await client.query(`INSERT INTO messages (channel, author, body) SELECT 'rare', 'bench', 'rare ' || n FROM generate_series(1, $1::int) AS n`, [rareCount])
await client.query(`INSERT INTO messages (channel, author, body) SELECT 'busy', 'bench', repeat('x', 100) FROM generate_series(1, $1::int)`, [rows])
await client.query("VACUUM ANALYZE messages")
const [last] = (await client.query("SELECT txid::text AS txid, id::text AS id FROM messages ORDER BY txid DESC, id DESC LIMIT 1"))
  .rows as Array<{ readonly txid: string; readonly id: string }>
const newest = messageId(last!.txid, last!.id)
await client.end()

const results: Record<string, Record<string, number | string>> = {}
try {
  await caughtUp(pollcast, newest)
  results.pollcast = await measure(pollcast)
  if (compare !== undefined) {
    const other = await startService({ ...settings, DATABASE_URL: pollcast.databaseUrl }, {
      entry: Path.join(compare, "dist/main.js")
    })
    try {
      await caughtUp(other, newest)
      results.compare = await measure(other)
    } finally {
      await other.stop()
    }
  }
} catch (error) {
  console.error(`The bench failed; the node's last lines:\n${pollcast.output().split("\n").slice(-15).join("\n")}`)
  throw error
} finally {
  await pollcast.stop()
}

const targets = Object.keys(results)
const figures = Object.keys(results.pollcast ?? {})
const format = (value: number | string | undefined) => (typeof value === "number" ? `${value.toFixed(1)} ms` : value ?? "")
console.log(`\n${rows.toLocaleString("en")} rows, median of 5 (ms)\n`)
console.log(`| figure | ${targets.join(" | ")} |`)
console.log(`|---|${targets.map(() => "---:").join("|")}|`)
for (const figure of figures) console.log(`| ${figure} | ${targets.map((target) => format(results[target]![figure])).join(" | ")} |`)
