/**
 * BASELINE for the benchmarks — not part of pollcast.
 *
 * The same design written the way most Node users would hand-roll it: node:http, pg, a
 * setInterval that polls `WHERE id > last`, and a res.write to every client for every message.
 * It serves the same API shape the benchmark uses (POST /messages, GET /events?channel=), so that
 * both servers face identical load. It keeps the usual flaws on purpose (rows committed out of
 * order are skipped, slow clients buffer without bound, polls can overlap); what is measured
 * here is its speed, not its correctness.
 *
 * Plain JavaScript, run by plain Node, as such a server usually is:
 *   DATABASE_URL=postgres://… PORT=8081 POLL_INTERVAL_MS=100 node scripts/bench/baseline-server.mjs
 */
import * as Http from "node:http"
import pg from "pg"

const port = Number(process.env.PORT ?? 8081)
const pollIntervalMs = Number(process.env.POLL_INTERVAL_MS ?? 1000)
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 })

await pool.query(`
  CREATE TABLE IF NOT EXISTS messages (
    id bigserial PRIMARY KEY,
    channel text NOT NULL DEFAULT 'general',
    author text NOT NULL DEFAULT 'anonymous',
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  )`)

const clients = new Set()
let last = Number((await pool.query("SELECT coalesce(max(id), 0) AS id FROM messages")).rows[0].id)

setInterval(async () => {
  const { rows } = await pool.query(
    "SELECT id, channel, author, body, created_at FROM messages WHERE id > $1 ORDER BY id",
    [last]
  )
  for (const row of rows) {
    last = Number(row.id)
    const message = { id: String(row.id), channel: row.channel, author: row.author, body: row.body, createdAt: row.created_at }
    const frame = `id: ${row.id}\nevent: message\ndata: ${JSON.stringify(message)}\n\n`
    for (const client of clients) {
      if (client.channels === undefined || client.channels.has(row.channel)) client.res.write(frame)
    }
  }
}, pollIntervalMs)

const server = Http.createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost")
  if (req.method === "GET" && url.pathname === "/events") {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
    res.write("retry: 2000\n\n")
    const channels = url.searchParams.getAll("channel")
    const client = { res, channels: channels.length > 0 ? new Set(channels) : undefined }
    clients.add(client)
    req.on("close", () => clients.delete(client))
    return
  }
  if (req.method === "POST" && url.pathname === "/messages") {
    let text = ""
    for await (const chunk of req) text += chunk
    try {
      const input = JSON.parse(text)
      const { rows } = await pool.query(
        "INSERT INTO messages (channel, author, body) VALUES ($1, $2, $3) RETURNING id, channel, author, body, created_at",
        [input.channel ?? "general", input.author ?? "anonymous", input.body]
      )
      res.writeHead(201, { "content-type": "application/json" })
      res.end(JSON.stringify(rows[0]))
    } catch (error) {
      res.writeHead(400, { "content-type": "application/json" })
      res.end(JSON.stringify({ error: String(error) }))
    }
    return
  }
  if (url.pathname === "/stats") {
    res.writeHead(200, { "content-type": "application/json" })
    res.end(JSON.stringify({ clients: clients.size }))
    return
  }
  res.writeHead(404)
  res.end()
})

server.listen(port, "127.0.0.1", () => console.log(`Listening on http://127.0.0.1:${port}`))
process.on("SIGTERM", () => {
  for (const client of clients) client.res.end()
  server.close(() => pool.end().then(() => process.exit(0)))
})
