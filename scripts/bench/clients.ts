/**
 * Benchmark load generator: a child process (forked by generators.ts) that holds many SSE
 * clients over raw HTTP/1.1 sockets and reports what they received.
 *
 * To keep the generator cheap per delivery (it shares the machine with the server), every client
 * de-chunks its stream and folds it into a CRC-32, natively; only "probe" clients parse events:
 * they time each message (its body carries its send time) and check that every message arrived
 * once. Clients following the same channels must end with identical CRCs: the same messages in
 * the same order, byte for byte, heartbeats left out (each process of a node sends its own, on its
 * own timer, so clients of two workers see them at different places among the same messages;
 * pollcast's own heartbeat, a comment frame, is recognised, not a baseline's). A client that gets no stream is counted by why: the answer's
 * status, the socket's error (EMFILE, EADDRNOTAVAIL, ...), or no answer in time.
 */
import * as Net from "node:net"
import { crc32 } from "node:zlib"
import { heartbeatFrame } from "../../src/Delivery/Sse.js"
import { Histogram } from "./statistics.js"

const heartbeat = Buffer.from(heartbeatFrame)
const colon = 58

export interface ClientSpec {
  /** e.g. `/events?channel=bench-3` */
  readonly path: string
  /** Clients with the same group follow the same channels and must receive the same bytes. */
  readonly group: string
  readonly probe: boolean
}

export type Command =
  | {
    readonly type: "connect"
    readonly host: string
    readonly port: number
    readonly localAddress?: string | undefined
    /** Sent with every client's request (an Authorization header, say). */
    readonly headers: Readonly<Record<string, string>>
    readonly clients: ReadonlyArray<ClientSpec>
    readonly concurrency: number
    /** A client without an answer this long gives up (default: it waits). */
    readonly timeoutMs?: number | undefined
    /** Sends a `progress` message this often while connecting (default: none). */
    readonly progressEveryMs?: number | undefined
  }
  | { readonly type: "report" }
  | { readonly type: "tally"; readonly expected: Readonly<Record<string, Expected>> }
  | { readonly type: "reset" }
  | { readonly type: "close" }

export interface ProbeReport {
  readonly group: string
  readonly count: number
  readonly duplicates: number
  readonly sequenceSum: number
}

export interface Report {
  readonly type: "report"
  readonly connected: number
  readonly disconnected: number
  readonly connectMillis: ReadonlyArray<number>
  readonly groups: Record<string, { readonly crcs: Record<string, number> }>
  readonly probes: ReadonlyArray<ProbeReport>
  readonly latency: ReturnType<Histogram["toJSON"]>
  readonly lastReceiptAt: number
  readonly probeMessages: number
  /** Clients that never got a stream, by why (`status 503`, `error EMFILE`, ...). */
  readonly failures: Record<string, number>
}

/** What a probe on a group must have received: how many messages, and their sequence numbers' sum. */
export interface Expected {
  readonly count: number
  readonly sequenceSum: number
}

/**
 * Every probe checked against what it should have received, in a few numbers however many
 * clients there are (a report lists each probe).
 */
export interface Tally {
  readonly type: "tally"
  readonly clients: number
  readonly connected: number
  readonly disconnected: number
  /** Open probes with every message expected of their group, once each. */
  readonly complete: number
  /** Open probes with fewer messages than expected. */
  readonly missing: number
  /** Probes that received a message twice. */
  readonly duplicated: number
  /** Open probes with as many messages as expected but not the same ones. */
  readonly wrong: number
  /** The distinct streams (their CRCs) the open clients of each group received. */
  readonly streams: Record<string, ReadonlyArray<number>>
  readonly latency: ReturnType<Histogram["toJSON"]>
  /** Time from starting a connection to its answer's headers. */
  readonly connectLatency: ReturnType<Histogram["toJSON"]>
  readonly lastReceiptAt: number
  readonly probeMessages: number
  readonly failures: Record<string, number>
}

export interface Progress {
  readonly type: "progress"
  readonly opened: number
  readonly failed: number
}

const now = () => performance.timeOrigin + performance.now()
const frameBody = /"body":"t=([0-9.]+);s=(\d+);/g

class Client {
  crc = 0
  /** The end of the bytes taken so far, held back from the CRC while it may begin a heartbeat. */
  pending: Buffer = Buffer.alloc(0)
  open = false
  closed = false
  /** Why it got no stream, if it did not. */
  failure: string | undefined
  private headerText = ""
  private headersDone = false
  private chunked = true
  // De-chunking state: bytes left in the current chunk, or -1 while reading a size line.
  private remaining = -1
  private sizeLine = ""
  private skipCrlf = 0
  private text = ""
  private seen = new Uint8Array(1024)
  count = 0
  duplicates = 0
  sequenceSum = 0

  constructor(readonly spec: ClientSpec, private readonly latency: Histogram, private readonly onReceipt: (at: number) => void) {}

  /** Feeds raw socket bytes. Returns true once the response headers have arrived. */
  feed(data: Buffer): void {
    let offset = 0
    if (!this.headersDone) {
      this.headerText += data.toString("latin1")
      const end = this.headerText.indexOf("\r\n\r\n")
      if (end === -1) return
      if (!this.headerText.startsWith("HTTP/1.1 200")) {
        this.failure = `status ${this.headerText.slice(9, 12)}`
        throw new Error(`unexpected response: ${this.headerText.split("\r\n")[0]}`)
      }
      this.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(this.headerText.slice(0, end))
      this.headersDone = true
      this.open = true
      offset = data.length - (this.headerText.length - end - 4)
      this.headerText = ""
    }
    if (!this.chunked) {
      if (offset < data.length) this.take(data.subarray(offset))
      return
    }
    while (offset < data.length) {
      if (this.skipCrlf > 0) {
        const skip = Math.min(this.skipCrlf, data.length - offset)
        this.skipCrlf -= skip
        offset += skip
        continue
      }
      if (this.remaining === -1) {
        const lineEnd = data.indexOf(10, offset)
        if (lineEnd === -1) {
          this.sizeLine += data.toString("latin1", offset)
          return
        }
        this.sizeLine += data.toString("latin1", offset, lineEnd)
        this.remaining = parseInt(this.sizeLine, 16)
        this.sizeLine = ""
        offset = lineEnd + 1
        if (this.remaining === 0) return
        continue
      }
      const take = Math.min(this.remaining, data.length - offset)
      this.take(data.subarray(offset, offset + take))
      this.remaining -= take
      offset += take
      if (this.remaining === 0) {
        this.remaining = -1
        this.skipCrlf = 2
      }
    }
  }

  /** Body bytes, de-chunked: into the CRC but for heartbeats (see the header). */
  private take(slice: Buffer) {
    if (this.spec.probe) this.parse(slice)
    const data = this.pending.length === 0 ? slice : Buffer.concat([this.pending, slice])
    let from = 0
    for (let at = data.indexOf(heartbeat); at !== -1; at = data.indexOf(heartbeat, from)) {
      this.crc = crc32(data.subarray(from, at), this.crc)
      from = at + heartbeat.length
    }
    let keep = data.length
    for (let k = Math.max(from, data.length - heartbeat.length + 1); k < data.length; k++) {
      if (data[k] === colon && data.subarray(k).equals(heartbeat.subarray(0, data.length - k))) {
        keep = k
        break
      }
    }
    this.crc = crc32(data.subarray(from, keep), this.crc)
    this.pending = data.subarray(keep)
  }

  private parse(slice: Buffer) {
    this.text += slice.toString("utf8")
    const end = this.text.lastIndexOf("\n\n")
    if (end === -1) return
    const complete = this.text.slice(0, end)
    this.text = this.text.slice(end + 2)
    const at = now()
    for (const match of complete.matchAll(frameBody)) {
      const sequence = Number(match[2])
      this.latency.record(at - Number(match[1]))
      this.onReceipt(at)
      this.mark(sequence)
    }
  }

  private mark(sequence: number) {
    if (sequence >= this.seen.length * 8) {
      const grown = new Uint8Array(Math.max(this.seen.length * 2, (sequence >> 3) + 1))
      grown.set(this.seen)
      this.seen = grown
    }
    const byte = sequence >> 3
    const bit = 1 << (sequence & 7)
    if (this.seen[byte]! & bit) {
      this.duplicates++
      return
    }
    this.seen[byte]! |= bit
    this.count++
    this.sequenceSum += sequence
  }
}

const latency = new Histogram()
const clients: Array<Client> = []
const sockets: Array<Net.Socket> = []
const connectMillis: Array<number> = []
const connectLatency = new Histogram()
let opened = 0
let failed = 0
let lastReceiptAt = 0
let probeMessages = 0
const onReceipt = (at: number) => {
  lastReceiptAt = at
  probeMessages++
}

const connectAll = async (command: Extract<Command, { type: "connect" }>) => {
  let next = 0
  const extraHeaders = Object.entries(command.headers).map(([name, value]) => `${name}: ${value}\r\n`).join("")
  const connectOne = (spec: ClientSpec) =>
    new Promise<void>((resolve) => {
      const client = new Client(spec, latency, onReceipt)
      clients.push(client)
      const started = now()
      const socket = Net.connect({
        host: command.host,
        port: command.port,
        ...(command.localAddress === undefined ? {} : { localAddress: command.localAddress })
      })
      sockets.push(socket)
      socket.setNoDelay(true)
      socket.once("connect", () => {
        socket.write(
          `GET ${spec.path} HTTP/1.1\r\nHost: ${command.host}:${command.port}\r\nAccept: text/event-stream\r\n${extraHeaders}\r\n`
        )
      })
      let settled = false
      const settle = () => {
        if (!settled) {
          settled = true
          resolve()
        }
      }
      const timeout = command.timeoutMs === undefined ? undefined : setTimeout(() => {
        client.failure ??= `no answer in ${command.timeoutMs! / 1000} s`
        socket.destroy()
      }, command.timeoutMs)
      socket.on("data", (data: Buffer) => {
        const wasOpen = client.open
        try {
          client.feed(data)
        } catch {
          socket.destroy()
        }
        if (!wasOpen && client.open) {
          clearTimeout(timeout)
          const millis = now() - started
          connectMillis.push(millis)
          connectLatency.record(millis)
          opened++
          settle()
        }
      })
      socket.on("error", (error: NodeJS.ErrnoException) => {
        if (!client.open) client.failure ??= `error ${error.code ?? error.message}`
      })
      socket.on("close", () => {
        clearTimeout(timeout)
        client.closed = true
        if (!client.open) {
          client.failure ??= "closed before an answer"
          failed++
          // The first failure is told at once: how many streams were open then says where it stopped.
          if (failed === 1 && command.progressEveryMs !== undefined) process.send!({ type: "progress", opened, failed } satisfies Progress)
        }
        settle()
      })
    })
  const worker = async () => {
    while (next < command.clients.length) {
      const spec = command.clients[next++]!
      await connectOne(spec)
    }
  }
  const progress = command.progressEveryMs === undefined
    ? undefined
    : setInterval(() => process.send!({ type: "progress", opened, failed } satisfies Progress), command.progressEveryMs)
  await Promise.all(Array.from({ length: command.concurrency }, worker))
  clearInterval(progress)
}

const failures = () => {
  const counts: Record<string, number> = {}
  for (const client of clients) if (client.failure !== undefined) counts[client.failure] = (counts[client.failure] ?? 0) + 1
  return counts
}

const tally = (expected: Readonly<Record<string, Expected>>): Tally => {
  let connected = 0
  let complete = 0
  let missing = 0
  let duplicated = 0
  let wrong = 0
  const crcs: Record<string, Set<number>> = {}
  for (const client of clients) {
    if (client.open && !client.closed) {
      connected++
      const seen = crcs[client.spec.group] ?? new Set<number>()
      seen.add(client.crc)
      crcs[client.spec.group] = seen
    }
    if (!client.spec.probe) continue
    if (client.duplicates > 0) duplicated++
    if (!client.open || client.closed) continue
    const want = expected[client.spec.group] ?? { count: 0, sequenceSum: 0 }
    if (client.count < want.count) missing++
    else if (client.count !== want.count || client.sequenceSum !== want.sequenceSum) wrong++
    else if (client.duplicates === 0) complete++
  }
  return {
    type: "tally",
    clients: clients.length,
    connected,
    disconnected: clients.filter((client) => client.open && client.closed).length,
    complete,
    missing,
    duplicated,
    wrong,
    streams: Object.fromEntries(Object.entries(crcs).map(([group, set]) => [group, [...set]])),
    latency: latency.toJSON(),
    connectLatency: connectLatency.toJSON(),
    lastReceiptAt,
    probeMessages,
    failures: failures()
  }
}

const report = (): Report => {
  const groups: Record<string, { crcs: Record<string, number> }> = {}
  for (const client of clients) {
    const group = (groups[client.spec.group] ??= { crcs: {} })
    const key = client.closed ? "disconnected" : client.crc.toString(16)
    group.crcs[key] = (group.crcs[key] ?? 0) + 1
  }
  return {
    type: "report",
    connected: clients.filter((client) => client.open && !client.closed).length,
    disconnected: clients.filter((client) => client.closed).length,
    connectMillis,
    groups,
    probes: clients.filter((client) => client.spec.probe).map((client) => ({
      group: client.spec.group,
      count: client.count,
      duplicates: client.duplicates,
      sequenceSum: client.sequenceSum
    })),
    latency: latency.toJSON(),
    lastReceiptAt,
    probeMessages,
    failures: failures()
  }
}

process.on("message", (command: Command) => {
  switch (command.type) {
    case "connect":
      void connectAll(command).then(() => process.send!({ type: "connected" }))
      return
    case "report":
      process.send!(report())
      return
    case "tally":
      process.send!(tally(command.expected))
      return
    case "reset":
      // Starts a new measurement on the same connections: fresh latencies and checksums.
      latency.reset()
      lastReceiptAt = 0
      probeMessages = 0
      for (const client of clients) {
        client.crc = 0
        client.pending = Buffer.alloc(0)
        client.count = 0
        client.duplicates = 0
        client.sequenceSum = 0
      }
      process.send!({ type: "reset" })
      return
    case "close":
      for (const socket of sockets) socket.destroy()
      process.exit(0)
  }
})
