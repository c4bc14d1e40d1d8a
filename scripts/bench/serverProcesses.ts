/**
 * What the bench reads of a running server across its processes. A pollcast node may be a
 * node:cluster primary with workers (WORKERS): its /stats lists them all (`processes`), and its
 * /metrics holds a series once per process (labelled `process`). Memory and CPU are summed over
 * every process listed, and a figure from /metrics is the sum of its samples. A server whose /stats
 * lists no processes (a build from before, the baseline) is the process the bench spawned alone.
 * The embedded PostgreSQL is never counted.
 */
import * as Fs from "node:fs"
import { cpuSeconds, rss } from "../support/processStats.js"
import { round } from "./statistics.js"

export interface ServerProcess {
  readonly name: string
  readonly pid: number
}

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

const isProcess = (value: unknown): value is ServerProcess =>
  typeof value === "object" && value !== null && typeof (value as ServerProcess).name === "string" &&
  Number.isInteger((value as ServerProcess).pid)

/** The processes a server's /stats lists; undefined where it lists none (or does not answer). */
export const listed = async (url: string, headers: Record<string, string>): Promise<ReadonlyArray<ServerProcess> | undefined> => {
  const response = await fetch(new URL("/stats", url), { headers }).catch(() => undefined)
  if (response?.ok !== true) return undefined
  const stats = (await response.json().catch(() => undefined)) as { processes?: unknown } | undefined
  const processes = stats?.processes
  return Array.isArray(processes) && processes.length > 0 && processes.every(isProcess) ? processes : undefined
}

/**
 * The JavaScript heap in use, in bytes, summed over the processes a server's /stats lists with
 * their memory; undefined where it gives none.
 */
export const heapUsedOf = async (url: string, headers: Record<string, string>): Promise<number | undefined> => {
  const response = await fetch(new URL("/stats", url), { headers }).catch(() => undefined)
  if (response?.ok !== true) return undefined
  const stats = (await response.json().catch(() => undefined)) as { processes?: ReadonlyArray<{ memory?: { heapUsed?: unknown } }> } | undefined
  const heaps = (stats?.processes ?? []).map((process) => process.memory?.heapUsed)
  return heaps.length > 0 && heaps.every((heap): heap is number => typeof heap === "number")
    ? heaps.reduce((sum, heap) => sum + heap, 0)
    : undefined
}

/**
 * Waits until the list of processes stops growing (two reads alike, half a second apart) and
 * holds at least `expected` of them, for 30 s at most: workers start after the primary listens.
 * Returns at once for a server that lists none.
 */
export const settled = async (url: string, headers: Record<string, string>, expected = 1) => {
  const until = Date.now() + 30_000
  let previous = await listed(url, headers)
  while (previous !== undefined && Date.now() < until) {
    await sleep(500)
    const current = await listed(url, headers)
    if (current === undefined) return
    if (current.length === previous.length && current.length >= expected) return
    previous = current
  }
}

/** `read()`, or `otherwise` where the process is gone. */
const attempt = <A>(read: () => A, otherwise: A) => {
  try {
    return read()
  } catch {
    return otherwise
  }
}
/** A figure of a process that is gone is NaN, so that a sum over it shows it. */
const orNaN = (read: () => number) => attempt(read, NaN)

/** Resident memory of every process, in bytes. */
export const rssOf = (processes: ReadonlyArray<ServerProcess>) =>
  processes.reduce((sum, { pid }) => sum + orNaN(() => rss(pid)), 0)

/** CPU seconds of every process (all threads), or of each one's main thread alone. */
export const cpuOf = (processes: ReadonlyArray<ServerProcess>, mainThreadOnly = false) =>
  processes.reduce((sum, { pid }) => sum + orNaN(() => cpuSeconds(pid, mainThreadOnly ? pid : undefined)), 0)

/** Whether a process handles SIGUSR2 (collectOnSignal.mjs): to one that does not, it is fatal. */
const catchesSigusr2 = (pid: number) => {
  const caught = /SigCgt:\s+([0-9a-f]+)/.exec(attempt(() => Fs.readFileSync(`/proc/${pid}/status`, "utf8"), ""))?.[1]
  // Signal n is bit n − 1 of the mask; SIGUSR2 is 12.
  return caught !== undefined && (BigInt(`0x${caught}`) & (1n << 11n)) !== 0n
}

export interface Memory {
  /** RSS of every process, in bytes, now. */
  readonly raw: number
  /** The same after a full garbage collection in each process that runs one on SIGUSR2. */
  readonly live: number
  /** The processes that ran that collection, of all those counted. */
  readonly collected: number
  readonly processes: ReadonlyArray<ServerProcess & { readonly rssMB: number }>
}

/** The servers' resident memory now, and after a full garbage collection (see collectOnSignal.mjs). */
export const memory = async (processes: ReadonlyArray<ServerProcess>): Promise<Memory> => {
  const raw = rssOf(processes)
  const collecting = processes.filter(({ pid }) => catchesSigusr2(pid))
  for (const { pid } of collecting) process.kill(pid, "SIGUSR2")
  await sleep(1000)
  return {
    raw,
    live: rssOf(processes),
    collected: collecting.length,
    processes: processes.map((each) => ({ ...each, rssMB: round(orNaN(() => rss(each.pid)) / 1024 / 1024) }))
  }
}

const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)/

/**
 * The sum of every sample of each of `names` in one scrape of /metrics (each process's, on a node
 * of several); undefined where the server has no /metrics, a name absent where it has no sample.
 */
export const metricSums = async (url: string, headers: Record<string, string>, names: ReadonlyArray<string>) => {
  const response = await fetch(new URL("/metrics", url), { headers }).catch(() => undefined)
  if (response?.ok !== true) return undefined
  const text = await response.text()
  const sums = new Map<string, number>()
  for (const line of text.split("\n")) {
    const match = sample.exec(line)
    if (match === null || !names.includes(match[1]!)) continue
    sums.set(match[1]!, (sums.get(match[1]!) ?? 0) + Number(match[2]))
  }
  return sums
}
