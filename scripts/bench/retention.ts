/**
 * Does retention hold delivery back? `npm run bench:retention [-- --rows 300000 --retention 40]`
 * stores that many messages, lets them expire (MESSAGE_RETENTION, in seconds: on a large table give
 * it time for the seeding and the poller's catching up to end first, or the control phase is
 * empty), and meanwhile publishes 50 msg/s to a subscriber. It prints the delivery latency before and while retention deletes them: each
 * deletion batch is a transaction that holds every node's delivery horizon while it runs, so a
 * long one would show here as a long delay.
 */
import { EventSource } from "eventsource"
import { parseArgs } from "node:util"
import pg from "pg"
import { build, startService } from "../support/ServiceProcess.js"
import { Histogram } from "./statistics.js"

const { values } = parseArgs({
  options: { rows: { type: "string", default: "300000" }, retention: { type: "string", default: "40" } }
})
const rows = Number(values.rows)
const retentionSeconds = Number(values.retention)

build()
const service = await startService({
  POLL_INTERVAL: "1 second",
  MESSAGE_RETENTION: `${retentionSeconds} seconds`,
  RETENTION_INTERVAL: "1 second",
  LOG_LEVEL: "info"
})
const now = () => performance.timeOrigin + performance.now()
const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

let latency = new Histogram()
let newestSent = 0
const source = new EventSource(`${service.url}/events?channel=live`)
source.addEventListener("message", (event) => {
  const sent = /^t=([0-9.]+)$/.exec(JSON.parse(event.data).body)
  if (sent === null) return
  latency.record(now() - Number(sent[1]))
  newestSent = Math.max(newestSent, Number(sent[1]))
})
await new Promise((resolve) => source.addEventListener("open", resolve, { once: true }))

let publishing = true
const publisher = (async () => {
  while (publishing) {
    void fetch(`${service.url}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channel: "live", body: `t=${now()}` })
    }).catch(() => undefined)
    await sleep(20)
  }
})()

const client = new pg.Client({ connectionString: service.databaseUrl })
await client.connect()
const seeded = now()
await client.query(
  `INSERT INTO messages (channel, author, body)
   SELECT 'archive', 'bench', repeat('x', 100) FROM generate_series(1, $1::int)`,
  [rows]
)
await client.end()
// The seeding INSERT held the horizon while it ran, and the poller then reads its rows: the control
// phase starts once a message sent after it has arrived.
const seedingDone = now()
while (newestSent < seedingDone) await sleep(50)
latency = new Histogram()

// Until they expire: the control phase.
await sleep(Math.max(0, seeded + (retentionSeconds - 1) * 1000 - now()))
const before = latency
latency = new Histogram()
const deletionStarted = now()
const deleted = () =>
  [...service.output().matchAll(/Deleted (\d+) message\(s\)/g)].reduce((sum, match) => sum + Number(match[1]), 0)
while (deleted() < rows) await sleep(100)
const during = latency
const deletionSeconds = (now() - deletionStarted) / 1000

publishing = false
await publisher
source.close()
await service.stop()

const line = (name: string, histogram: Histogram) =>
  `${name.padEnd(26)} ${String(histogram.count).padStart(6)} messages   p50 ${histogram.percentile(0.5).toFixed(1)} ms   ` +
  `p99 ${histogram.percentile(0.99).toFixed(1)} ms   max ${(histogram.max / 1000).toFixed(1)} ms`
console.log(
  `\nRetention deleted ${rows.toLocaleString("en")} expired messages within ${deletionSeconds.toFixed(1)} s ` +
    `(${Math.round(rows / deletionSeconds).toLocaleString("en")} per second; batches of 1,000, one transaction each), ` +
    "while 50 msg/s were delivered live:"
)
console.log(line("before it began", before))
console.log(line("while it deleted", during))
process.exit(0)
