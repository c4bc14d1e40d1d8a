/**
 * CPU per POST /messages of a node: this checkout's build, and with `--compare DIR` the build in
 * another checkout, side by side on one PostgreSQL (a fresh database each), access control off
 * and no rate limit, its access log on as in production. Each node takes `--requests` POSTs (default 20,000) over 32 keep-alive
 * connections after a warm-up; the builds alternate, `--rounds` times each (default 3). The node's
 * CPU includes its database client's work, the same for every build.
 *
 *     npm run bench:api -- [--compare DIR] [--requests 20000] [--rounds 3]
 */
import * as Http from "node:http"
import * as Path from "node:path"
import { checkoutArgument, numberArgument } from "../support/arguments.js"
import { cpuSeconds } from "../support/processStats.js"
import { build, root, startService } from "../support/ServiceProcess.js"
import * as Database from "./database.js"
import { middleOf } from "./statistics.js"

const requests = numberArgument("requests", 20_000)
const rounds = numberArgument("rounds", 3)
const compare = checkoutArgument("compare")
const concurrency = 32
const body = JSON.stringify({ channel: "bench", author: "api-bench", body: "x".repeat(100) })

const builds = [{ name: "pollcast", directory: root }, ...(compare === undefined ? [] : [{ name: "compare", directory: compare }])]

const load = (url: string, count: number) => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets: concurrency })
  let sent = 0
  let done = 0
  return new Promise<void>((resolve, reject) => {
    const next = () => {
      if (sent === count) return
      sent++
      const request = Http.request(`${url}/messages`, { method: "POST", agent, headers: { "content-type": "application/json" } }, (response) => {
        if (response.statusCode !== 201) reject(new Error(`answered ${response.statusCode}`))
        response.resume()
        response.on("end", () => {
          done++
          if (done === count) {
            agent.destroy()
            resolve()
          } else next()
        })
      })
      request.on("error", reject)
      request.end(body)
    }
    for (let i = 0; i < concurrency; i++) next()
  })
}

build()
const database = await Database.open(false)
const results = new Map(builds.map(({ name }) => [name, [] as Array<number>]))
try {
  for (let round = 1; round <= rounds; round++) {
    for (const { directory, name } of builds) {
      const fresh = await database.fresh()
      const node = await startService(
        { DATABASE_URL: fresh.url, PUBLISH_RATE: "0" },
        { entry: Path.join(directory, "dist/main.js") }
      )
      try {
        await load(node.url, 2000)
        const before = cpuSeconds(node.pid)
        const started = performance.now()
        await load(node.url, requests)
        const elapsed = (performance.now() - started) / 1000
        const microseconds = Math.round(((cpuSeconds(node.pid) - before) / requests) * 1e6)
        results.get(name)!.push(microseconds)
        console.log(`round ${round} ${name}: ${microseconds} µs of node CPU per POST, ${Math.round(requests / elapsed)} POST/s`)
      } finally {
        await node.stop()
        await database.drop(fresh.name)
      }
    }
  }
} finally {
  await database.close()
}
for (const [name, cpu] of results) {
  console.log(`${name}: CPU per POST min ${Math.min(...cpu)} µs, median ${middleOf(cpu)} µs, max ${Math.max(...cpu)} µs`)
}
