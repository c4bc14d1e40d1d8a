/**
 * CPU per POST /messages of the HTTP layer alone: pollcast's HttpRouter route, the same with the
 * request log in front (its access line at info), and the endpoint served by HttpApiBuilder from
 * src/Api.ts (apiServer.ts: same request policy, a repo that stores nothing). Each server takes
 * `--requests` POSTs (default 20,000) over 32 keep-alive connections after a warm-up; runs
 * alternate, `--rounds` times each (default 3).
 *
 *     npm run bench:api -- [--requests 20000] [--rounds 3]
 */
import { Effect } from "effect"
import * as Http from "node:http"
import { numberArgument } from "../support/arguments.js"
import { cpuSeconds } from "../support/processStats.js"
import * as ServiceProcess from "../support/ServiceProcess.js"
import { middleOf } from "./statistics.js"

const requests = numberArgument("requests", 20_000)
const rounds = numberArgument("rounds", 3)
const concurrency = 32
const body = JSON.stringify({ channel: "bench", author: "api-bench", body: "x".repeat(100) })

type Mode = "router" | "logged" | "builder"
const modes: ReadonlyArray<Mode> = ["router", "logged", "builder"]


const load = (port: number, count: number) => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets: concurrency })
  let sent = 0
  let done = 0
  return new Promise<void>((resolve, reject) => {
    const next = () => {
      if (sent === count) return
      sent++
      const request = Http.request(
        { host: "127.0.0.1", port, path: "/messages", method: "POST", agent, headers: { "content-type": "application/json" } },
        (response) => {
          if (response.statusCode !== 201) reject(new Error(`answered ${response.statusCode}`))
          response.resume()
          response.on("end", () => {
            done++
            if (done === count) {
              agent.destroy()
              resolve()
            } else next()
          })
        }
      )
      request.on("error", reject)
      request.end(body)
    }
    for (let i = 0; i < concurrency; i++) next()
  })
}

/** Starts the server for `mode`, loads it, and kills it (when the scope closes). */
const measure = (mode: Mode) =>
  Effect.gen(function*() {
    const server = yield* ServiceProcess.spawn({}, [process.execPath, "--import", "tsx", "scripts/bench/apiServer.ts", mode])
    const port = Number((yield* ServiceProcess.waitForOutput(server, /port (\d+)/))[1])
    return yield* Effect.promise(async () => {
      await load(port, 2000)
      const before = cpuSeconds(server.pid)
      const started = performance.now()
      await load(port, requests)
      const elapsed = (performance.now() - started) / 1000
      const cpu = cpuSeconds(server.pid) - before
      return { microsecondsPerPost: Math.round((cpu / requests) * 1e6), postsPerSecond: Math.round(requests / elapsed) }
    })
  }).pipe(Effect.scoped, Effect.runPromise)

const results: Record<string, Array<{ microsecondsPerPost: number; postsPerSecond: number }>> = {
  router: [],
  logged: [],
  builder: []
}
for (let round = 1; round <= rounds; round++) {
  for (const mode of modes) {
    const result = await measure(mode)
    results[mode]!.push(result)
    console.log(`round ${round} ${mode}: ${result.microsecondsPerPost} µs of server CPU per POST, ${result.postsPerSecond} POST/s`)
  }
}
for (const mode of modes) {
  const cpu = results[mode]!.map((result) => result.microsecondsPerPost)
  console.log(`${mode}: CPU per POST min ${Math.min(...cpu)} µs, median ${middleOf(cpu)} µs`)
}
