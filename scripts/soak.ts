/**
 * `npm run soak`: the fault soak. One PostgreSQL (embedded, or a fresh database on the server at
 * DATABASE_URL), several pollcast nodes as child processes, each behind a TCP proxy to the
 * database; publishers, a plain-SQL writer and SSE subscribers at work the whole time; and a
 * seeded fault injector (kill -9, SIGTERM, SIGSTOP, database links cut and stalled, the database
 * restarted, a subscriber that stops reading, bursts, a client resuming from long ago). Then the
 * recorded history is checked: nothing lost, duplicated, reordered or delivered unstored.
 *
 * Options: --minutes N (10; 1 with --short)   --nodes N (3)   --seed N (random; printed)
 *          --short (every fault kind once, in about a minute)   --chart FILE
 *          --check FILE (check a recorded history again, without running anything)
 * Writes soak-results/<run>/ (history.jsonl, node logs, report.md, chart) and, for a full run,
 * docs/soak-chart.svg. Exits non-zero when the check fails.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Data, Duration, Effect, Fiber, Hash, Redacted, Runtime, Schedule } from "effect"
import { PCGRandom } from "effect/Utils"
import * as Fs from "node:fs"
import * as Path from "node:path"
import pg from "pg"
import { messageId } from "../src/Domain/Message.js"
import { machine } from "./support/processStats.js"
import { check, type Report } from "./soak/checker.js"
import { writeChart } from "./soak/chart.js"
import * as Cluster from "./soak/cluster.js"
import * as History from "./soak/history.js"
import { inject, type Soak, waitFor } from "./soak/injector.js"
import { plan } from "./soak/plan.js"
import { keyOf, Publisher } from "./soak/publisher.js"
import * as Table from "./soak/report.js"
import { SqlWriter } from "./soak/sqlWriter.js"
import { markerPrefix, Subscriber } from "./soak/subscriber.js"
import { build, root } from "./support/ServiceProcess.js"
import * as TcpProxy from "./support/TcpProxy.js"
import { argument, numberArgument } from "./support/arguments.js"

const positive = (name: string, fallback: number) => {
  const value = numberArgument(name, fallback)
  if (!(value > 0)) throw new Error(`--${name} must be a positive number`)
  return value
}
const short = process.argv.includes("--short")
const minutes = positive("minutes", short ? 1 : 10)
const nodeCount = Math.round(positive("nodes", 3))
const seed = Math.round(numberArgument("seed", Math.floor(Math.random() * 1_000_000)))
const checkOnly = argument("check")

const rate = 200
const channels = Array.from({ length: 6 }, (_, i) => `soak-${i}`)
const heartbeatMillis = 1000
const shutdownTimeoutMillis = 5000
const settings = {
  POLL_INTERVAL: "200 millis",
  HEARTBEAT_INTERVAL: `${heartbeatMillis} millis`,
  SSE_RETRY: "500 millis",
  // Small enough that a subscriber that stops reading is cut off within its pause.
  CLIENT_BUFFER_BYTES: "131072",
  SHUTDOWN_TIMEOUT: `${shutdownTimeoutMillis} millis`,
  // The publishers share one address, standing for many users: no per-address rate limit.
  PUBLISH_RATE: "0",
  LOG_LEVEL: "Info"
}

class SoakFailed extends Data.TaggedError("SoakFailed")<{ readonly message: string }> {}

const log = (text: string) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}] ${text}`)
const seconds = (millis: number) => `${(millis / 1000).toFixed(1)} s`

/** Prints the table, writes the report and the chart; fails when the check does. */
const conclude = (report: Report, folder: string, chartFile: string, caption: string) =>
  Effect.gen(function*() {
    Fs.writeFileSync(Path.join(folder, "report.md"), `${caption}\n\n${Table.markdown(report)}\n`)
    Fs.writeFileSync(Path.join(folder, "report.json"), JSON.stringify(report, null, 2))
    writeChart(chartFile, report, caption)
    console.log(`\n${caption}\n\n${Table.text(report)}\n`)
    if (report.samples.length > 0) console.log(`Problems (first ${report.samples.length}):\n  ${report.samples.join("\n  ")}\n`)
    const warnings = report.anomalies.filter((anomaly) => anomaly.severity === "warning")
    if (warnings.length > 0) {
      console.log(`Warnings (first 10 of ${warnings.length}):\n  ${warnings.slice(0, 10).map((w) => `${seconds(w.at)}: ${w.what}`).join("\n  ")}\n`)
    }
    console.log(`history, node logs and report: ${Path.relative(root, folder)}/; chart: ${Path.relative(root, chartFile)}`)
    if (!report.ok) {
      return yield* new SoakFailed({ message: "The soak found lost, duplicated, reordered or unstored messages, or a failing node" })
    }
  })

const recheck = (file: string) =>
  Effect.gen(function*() {
    const records = yield* Effect.promise(() => History.read(file))
    const meta = records.find((record) => record._tag === "meta")
    const report = check(records)
    const folder = Path.dirname(file)
    yield* conclude(report, folder, argument("chart") ?? Path.join(folder, "chart.svg"), Table.caption(meta))
  })

const soak = Effect.gen(function*() {
  const durationMs = minutes * 60_000
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)
  const folder = Path.join(root, "soak-results", `${stamp}-seed${seed}`)
  Fs.mkdirSync(folder, { recursive: true })
  const chartFile = Path.resolve(argument("chart") ?? (short ? Path.join(folder, "chart.svg") : Path.join(root, "docs", "soak-chart.svg")))
  log(`seed ${seed}, ${minutes} minute(s), ${nodeCount} nodes${short ? ", short" : ""}; replay with --seed ${seed}`)
  build()

  const runtime = yield* Effect.runtime<never>()
  const scope = yield* Effect.scope
  const history = yield* Effect.acquireRelease(
    Effect.sync(() => new History.HistoryWriter(Path.join(folder, "history.jsonl"))),
    (writer) => Effect.promise(() => writer.close())
  )
  let started = performance.now()
  const now = () => Math.round((performance.now() - started) * 10) / 10
  const anomaly = (severity: "error" | "warning", what: string) => {
    history.write({ _tag: "anomaly", severity, what, at: now() })
    if (severity === "error") log(`ANOMALY: ${what}`)
  }

  const database = yield* Cluster.database
  log(`database: ${database.describe}`)
  const sqlProxy = yield* TcpProxy.start(database.url)
  const nodes = yield* Cluster.nodes({
    count: nodeCount,
    database: database.url,
    settings,
    folder,
    events: {
      unexpectedExit: (node, description) => {
        anomaly("error", `node ${node.index} exited unexpectedly (${description}); restarting it`)
        // In the run's scope, so that a restart still going on when the soak ends is stopped.
        Runtime.runFork(runtime)(
          node.start.pipe(Effect.catchAll((error) => Effect.sync(() => anomaly("error", error.message))), Effect.forkIn(scope))
        )
      },
      startFailed: (node, attempt) => anomaly("warning", `node ${node.index} failed to start (attempt ${attempt}); retrying`)
    }
  })
  log(`nodes: ${nodes.map((node) => `${node.url} (pid ${node.pid})`).join(", ")}`)

  const faults = plan({ seed, durationMs, nodes: nodeCount, readers: 2, short, canRestartDatabase: database.canRestart })
  Fs.writeFileSync(Path.join(folder, "plan.json"), JSON.stringify(faults, null, 2))

  // The run's clock starts now.
  started = performance.now()
  const m = machine()
  const meta = {
    _tag: "meta",
    seed,
    minutes,
    nodes: nodeCount,
    short,
    startedAt: new Date().toISOString(),
    channels,
    settings,
    rate,
    machine: `${m.cpu}, ${m.cores} cores, Node ${m.node}`
  } as const
  history.write(meta)
  const random = new PCGRandom(seed, 0x50ac)
  const urls = nodes.map((node) => node.url)
  const subscribers: Array<Subscriber> = []
  const addSubscriber = (options: { channels: "all" | ReadonlyArray<string>; from?: string | undefined; fromInQuery?: boolean }) => {
    const subscriber = new Subscriber({
      s: subscribers.length,
      channels: options.channels,
      from: options.from,
      fromInQuery: options.fromInQuery ?? false,
      nodes: urls,
      node: subscribers.length % urls.length,
      random,
      history,
      now,
      staleAfterMillis: 5 * heartbeatMillis,
      connectTimeoutMillis: 5000
    })
    subscribers.push(subscriber)
    return subscriber
  }
  yield* Effect.addFinalizer(() => Effect.sync(() => subscribers.forEach((subscriber) => subscriber.close())))

  // Six subscribers: all channels or one to three, live or from the lastEventId of a history page.
  const pick = (count: number) => [...channels].sort(() => random.number() - 0.5).slice(0, count)
  for (const [i, selection] of (["all", "all", pick(1), pick(2), pick(3), pick(2)] as const).entries()) {
    const fromHistory = i % 2 === 1
    let from: string | undefined
    if (fromHistory) {
      const query = selection === "all" ? "" : selection.map((channel) => `&channel=${channel}`).join("")
      const page = yield* Effect.tryPromise(() => fetch(`${urls[i % urls.length]}/messages?limit=1${query}`).then((response) => response.json() as Promise<{ lastEventId: string }>))
      from = page.lastEventId
    }
    addSubscriber({ channels: selection, from })
  }
  yield* Effect.sleep("1 second")

  const publisher = new Publisher(nodes.map((node) => ({ index: node.index, url: node.url })), channels, rate, random, history, now)
  yield* Effect.addFinalizer(() => Effect.sync(() => publisher.close()))
  const sqlWriter = new SqlWriter(Redacted.value(sqlProxy.url), channels, random, history, now)
  const soak: Soak = {
    now,
    history,
    nodes,
    database,
    sqlProxy,
    publisher,
    sqlWriter,
    channels,
    subscribers,
    addSubscriber: (options) => addSubscriber(options),
    anomaly,
    log,
    shutdownTimeoutMillis
  }

  const watcher = yield* Effect.sync(() => subscribers.forEach((subscriber) => subscriber.watch())).pipe(
    Effect.repeat(Schedule.spaced("500 millis")),
    Effect.forkScoped
  )
  // Now and then a subscriber moves to another node of its own accord, so that every node has some.
  const rebalancer = yield* Effect.sync(() => subscribers[random.integer(subscribers.length)]?.rebalance()).pipe(
    Effect.repeat(Schedule.spaced("10 seconds")),
    Effect.delay("10 seconds"),
    Effect.forkScoped
  )
  const writers = yield* Effect.all([publisher.run, sqlWriter.run], { concurrency: "unbounded", discard: true }).pipe(Effect.forkScoped)
  const injector = yield* inject(soak, faults)
  const injecting = yield* Effect.forkScoped(injector.run)
  yield* Effect.sync(() => {
    const states = nodes.map((node) => node.state).join("/")
    const deliveries = subscribers.reduce((sum, subscriber) => sum + subscriber.deliveries, 0)
    log(`${seconds(now())}: ${publisher.accepted} POSTs answered 201 (${publisher.skipped} skipped), ${sqlWriter.committed} SQL rows, ${deliveries} deliveries; nodes ${states}; faults ${injector.active().join(", ") || "none"}`)
  }).pipe(Effect.repeat(Schedule.spaced("15 seconds")), Effect.delay("15 seconds"), Effect.forkScoped)

  yield* Effect.sleep(Duration.millis(durationMs))
  log("time is up: waiting for the last faults to end")
  yield* Fiber.join(injecting)
  yield* Fiber.interrupt(writers)
  yield* Fiber.interrupt(rebalancer)
  yield* publisher.drain
  log("writers stopped; writing an end marker on every channel")

  // The newest row of every channel: every subscriber following it is owed it.
  for (const channel of channels) {
    for (let attempt = 1; attempt <= 10; attempt++) {
      if ((yield* sqlWriter.writeOne(`${markerPrefix}${attempt}-${channel}`, channel)) === "acked") break
      yield* Effect.sleep("1 second")
    }
  }
  const caughtUp = yield* waitFor(() => subscribers.every((subscriber) => subscriber.caughtUp(channels)), "2 minutes")
  if (!caughtUp) {
    const behind = subscribers.filter((subscriber) => !subscriber.caughtUp(channels)).map((subscriber) => subscriber.s)
    anomaly("error", `subscribers ${behind.join(", ")} did not receive the end markers within two minutes`)
  }
  // Room for anything that should not come (a late duplicate) to show up.
  yield* Effect.sleep("2 seconds")
  yield* Fiber.interrupt(watcher)
  subscribers.forEach((subscriber) => subscriber.close())

  const stored = yield* Effect.acquireUseRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: Redacted.value(database.url) })
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.query<{ id: string; txid: string; channel: string; body: string }>("SELECT id::text, txid::text, channel, body FROM messages ORDER BY txid, id")),
    (client) => Effect.promise(() => client.end())
  )
  for (const row of stored.rows) {
    history.write({ _tag: "row", id: messageId(row.txid, row.id), key: keyOf(row.body), ch: row.channel, h: Hash.string(row.body) })
  }
  history.write({ _tag: "end", at: now() })
  yield* Effect.promise(() => history.close())
  log(`checking ${Path.relative(root, history.file)}`)

  const report = check(yield* Effect.promise(() => History.read(history.file)))
  yield* conclude(report, folder, chartFile, Table.caption(meta))
}).pipe(
  Effect.scoped,
  // A watchdog: whatever hangs, the soak ends (and cleans up) within ten minutes of its time.
  Effect.timeoutFail({ duration: Duration.minutes(minutes + 10), onTimeout: () => new Error("The soak ran ten minutes over its time") })
)

NodeRuntime.runMain(
  (checkOnly === undefined ? soak : recheck(checkOnly)).pipe(
    Effect.tapErrorCause((cause) =>
      Effect.sync(() => {
        const failure = Cause.failureOption(cause)
        console.error(failure._tag === "Some" && failure.value instanceof SoakFailed ? failure.value.message : Cause.pretty(cause))
      })
    ),
    Effect.onInterrupt(() => Effect.sync(() => console.error("Interrupted; everything the soak started is stopped.")))
  ),
  { disableErrorReporting: true }
)
