/**
 * `writers`: what a node costs the database's other writers, and what it gives them: 8
 * connections of single-row INSERTs with durable commits into messages while a node serves 1,000
 * clients, against the same into a copy of the table without pollcast's objects (rounds
 * alternating); for this build, also with the trigger a writer may choose to put back (README,
 * Wake-up). Then delivery at POLL_INTERVAL 1 s of POSTs and of plain INSERTs; then the database's
 * idle load with that node alone and with nine more on the database (pollcast and compare).
 */
import pg from "pg"
import { type Bench, connectClients, type Connection, type Delivery, measureDelivery, now, sleep } from "../measure.js"
import type { Target } from "../options.js"
import type { Scenario } from "../scenario.js"
import { cpuOf, type ServerProcess } from "../serverProcesses.js"
import { middleOf, round } from "../statistics.js"

/** Single-row INSERTs a second into `table` from `connections` connections for `seconds`, each commit durable. */
const insertRate = async (databaseUrl: string, table: string, connections = 8, seconds = 4) => {
  const clients = await Promise.all(Array.from({ length: connections }, async () => {
    const client = new pg.Client({ connectionString: databaseUrl })
    await client.connect()
    // Whatever the bench's server does (synchronous_commit=off unless --durable): the cost being
    // measured is paid while a commit is flushed.
    await client.query("SET synchronous_commit = on")
    return client
  }))
  let count = 0
  const until = now() + seconds * 1000
  await Promise.all(clients.map(async (client) => {
    while (now() < until) {
      await client.query(`INSERT INTO ${table} (channel, author, body) VALUES ('writers', 'other system', 'x')`)
      count++
    }
  }))
  await Promise.all(clients.map((client) => client.end()))
  return count / seconds
}

export interface WriterRates {
  /** INSERTs/s into messages with the node running, per round, and their median. */
  readonly messages: ReadonlyArray<number>
  /** The same into messages_copy: the table's columns, defaults, checks and indexes, nothing of pollcast's. */
  readonly copy: ReadonlyArray<number>
  readonly ratio: number
  /** With the wake-up trigger a writer may choose to put back (this build only). */
  readonly withTrigger?: number | undefined
  /**
   * The node's CPU (% of a core) while the writers insert into messages, which it reads and polls,
   * and into the copy, which it does not: what it takes from the cores PostgreSQL uses too.
   */
  readonly nodeCpuPercent?: { readonly messages: number; readonly copy: number } | undefined
}

const writerRates = async (databaseUrl: string, tryTrigger: boolean, node: ReadonlyArray<ServerProcess>): Promise<WriterRates> => {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    await client.query("CREATE TABLE IF NOT EXISTS messages_copy (LIKE messages INCLUDING ALL)")
    const messages: Array<number> = []
    const copy: Array<number> = []
    const nodeCpu = { messages: { cpu: 0, seconds: 0 }, copy: { cpu: 0, seconds: 0 } }
    const timedRate = async (table: "messages" | "messages_copy") => {
      const cpuBefore = cpuOf(node)
      const started = now()
      const rate = await insertRate(databaseUrl, table)
      const spent = nodeCpu[table === "messages" ? "messages" : "copy"]
      spent.cpu += cpuOf(node) - cpuBefore
      spent.seconds += (now() - started) / 1000
      return rate
    }
    for (let round = 0; round < 3; round++) {
      // Alternating which goes first, so that neither always follows the other.
      if (round % 2 === 0) {
        messages.push(await timedRate("messages"))
        copy.push(await timedRate("messages_copy"))
      } else {
        copy.push(await timedRate("messages_copy"))
        messages.push(await timedRate("messages"))
      }
    }
    let withTrigger: number | undefined
    if (tryTrigger) {
      await client.query(`CREATE TRIGGER messages_notify_wakeup AFTER INSERT ON messages
        FOR EACH STATEMENT EXECUTE FUNCTION messages_notify_wakeup()`)
      withTrigger = await insertRate(databaseUrl, "messages")
      await client.query("DROP TRIGGER messages_notify_wakeup ON messages")
    }
    return {
      messages,
      copy,
      ratio: round(middleOf(messages) / middleOf(copy), 3),
      withTrigger,
      nodeCpuPercent: {
        messages: round(100 * nodeCpu.messages.cpu / nodeCpu.messages.seconds),
        copy: round(100 * nodeCpu.copy.cpu / nodeCpu.copy.seconds)
      }
    }
  } finally {
    await client.end()
  }
}

const cpuSince = (before: Map<number, number>, after: Map<number, number>) =>
  [...after].reduce((sum, [pid, seconds]) => sum + (before.has(pid) ? seconds - before.get(pid)! : 0), 0)

export interface IdleLoad {
  readonly nodes: number
  readonly queriesPerSecond: number
  /** The database server's CPU, in % of one core. */
  readonly databaseCpuPercent: number
}

/** The database's load with `target`'s node alone and with nine more, none of them busy, over 10 s each. */
const idleLoad = async (bench: Bench, target: Target, database: { readonly name: string; readonly url: string }) => {
  const measure = async (nodes: number): Promise<IdleLoad> => {
    await sleep(3000)
    const cpuBefore = await bench.database.serverCpu()
    const before = await bench.database.transactions(database.name)
    const started = now()
    await sleep(10_000)
    const cpuAfter = await bench.database.serverCpu()
    const elapsed = (now() - started) / 1000
    await sleep(1100) // statistics reach pg_stat_database at most once a second
    return {
      nodes,
      queriesPerSecond: round(((await bench.database.transactions(database.name)) - before - 1) / elapsed),
      databaseCpuPercent: round(100 * cpuSince(cpuBefore, cpuAfter) / elapsed, 2)
    }
  }
  const alone = await measure(1)
  const more = await Promise.all(Array.from({ length: 9 }, () => bench.startTarget(target, database.url, 1000)))
  try {
    return [alone, await measure(10)]
  } finally {
    await Promise.all(more.map((node) => node.stop()))
  }
}

export interface WritersRun {
  readonly connection: Connection
  readonly inserts: WriterRates
  readonly posts: Delivery
  readonly plainInserts: Delivery
  readonly idle: Array<IdleLoad>
}

export const writers: Scenario = {
  name: "writers",
  run: async (bench) => {
    const load = { clients: 1000, channels: 1, rate: 20, seconds: bench.seconds }
    bench.log(`(writers) ${load.clients} clients, POLL_INTERVAL 1000 millis: other writers' INSERTs/s, delivery of POSTs and INSERTs, idle load of 1 and 10 nodes`)
    return {
      load,
      ...(await bench.perTarget(["pollcast", "compare"], async (target): Promise<WritersRun> => {
        const run = await connectClients(bench, target, load, 1000, 3)
        try {
          const inserts = await writerRates(run.database.url, target !== "compare", await run.server.processes())
          await run.generators.reset()
          const posts = await measureDelivery(bench, run.server, run.generators, run.database.name, load, 1000)
          await run.generators.reset()
          const plainInserts = await measureDelivery(bench, run.server, run.generators, run.database.name, load, 1000, run.database.url)
          const idle = await idleLoad(bench, target, run.database)
          return { connection: run.connection, inserts, posts, plainInserts, idle }
        } finally {
          await run.stop()
        }
      }))
    }
  }
}
