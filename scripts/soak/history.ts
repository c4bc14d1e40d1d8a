/**
 * The soak's recorded history: one JSON object per line, written as things happen, from which the
 * checker (checker.ts) decides afterwards whether anything was lost, duplicated, reordered or
 * delivered without being stored. Times are milliseconds since the run started, on one clock.
 */
import { Schema } from "effect"
import * as Fs from "node:fs"
import * as Readline from "node:readline"

/** A subscriber follows every channel, or these. */
const Channels = Schema.Union(Schema.Literal("all"), Schema.Array(Schema.String))

export const Meta = Schema.TaggedStruct("meta", {
  seed: Schema.Number,
  minutes: Schema.Number,
  nodes: Schema.Number,
  short: Schema.Boolean,
  startedAt: Schema.String,
  channels: Schema.Array(Schema.String),
  settings: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** Messages a second the publishers aim at, besides bursts. */
  rate: Schema.optional(Schema.Number),
  machine: Schema.optional(Schema.String)
})

/** A fault injected (or a long SQL transaction), with when it began and ended. */
export const Fault = Schema.TaggedStruct("fault", {
  n: Schema.Number,
  kind: Schema.String,
  target: Schema.String,
  start: Schema.Number,
  end: Schema.Number,
  detail: Schema.optional(Schema.String),
  /** The subscriber it struck (reader-stop): its own delays then say nothing about the service. */
  s: Schema.optional(Schema.Number)
})

/**
 * One message written. `acked`: POST answered 201, or the SQL transaction committed. `unknown`:
 * no answer (timeout, connection lost, 5xx, or the commit itself failed), so it may or may not be
 * stored. `refused` (the connection was refused: never sent), `failed` (the SQL transaction broke
 * before COMMIT) and `rolledback`: certainly not stored.
 */
export const Write = Schema.TaggedStruct("write", {
  src: Schema.Literal("post", "sql"),
  key: Schema.String,
  ch: Schema.String,
  /** Hash of the body. */
  h: Schema.Number,
  start: Schema.Number,
  end: Schema.Number,
  outcome: Schema.Literal("acked", "unknown", "refused", "failed", "rolledback"),
  /** The id the service answered (POST 201) or the row got (SQL). */
  id: Schema.optional(Schema.String),
  node: Schema.optional(Schema.Number),
  status: Schema.optional(Schema.Number),
  error: Schema.optional(Schema.String)
})

/** A subscriber begins: live from its first connection, or from the id `from`. */
export const Subscriber = Schema.TaggedStruct("sub", {
  s: Schema.Number,
  channels: Channels,
  from: Schema.optional(Schema.String),
  at: Schema.Number
})

/** A stored message as the checker compares them: its id, the key of the write that made it, its channel, its body's hash. */
const aMessage = { id: Schema.String, key: Schema.String, ch: Schema.String, h: Schema.Number }

/** Which subscriber (`s`) and which of its connections (`c`) an event is about. */
const ofConnection = { s: Schema.Number, c: Schema.Number }

/** Connection `c` of subscriber `s` opened on `node`, having sent Last-Event-ID `last`. */
export const Open = Schema.TaggedStruct("open", {
  ...ofConnection,
  node: Schema.Number,
  last: Schema.optional(Schema.String),
  at: Schema.Number
})

/** A connection ended, failed or was given up on (`why`: error text, "stale", "move"). */
export const Drop = Schema.TaggedStruct("drop", {
  ...ofConnection,
  why: Schema.String,
  at: Schema.Number
})

/** One message event received. */
export const Delivery = Schema.TaggedStruct("msg", { ...ofConnection, ...aMessage, at: Schema.Number })

/** A `reset` event: the stream continues after `id`, skipping what lies between. */
export const Reset = Schema.TaggedStruct("reset", {
  ...ofConnection,
  id: Schema.String,
  at: Schema.Number
})

/** A row of the messages table at the end of the run. */
export const Row = Schema.TaggedStruct("row", aMessage)

/** Something the harness saw go wrong with a node or the database, besides deliveries. */
export const Anomaly = Schema.TaggedStruct("anomaly", {
  severity: Schema.Literal("error", "warning"),
  what: Schema.String,
  at: Schema.Number
})

export const End = Schema.TaggedStruct("end", { at: Schema.Number })

export const Record = Schema.Union(Meta, Fault, Write, Subscriber, Open, Drop, Delivery, Reset, Row, Anomaly, End)
export type Record = typeof Record.Type

/** Appends records to `file` as JSON lines. */
export class HistoryWriter {
  private readonly stream: Fs.WriteStream

  constructor(readonly file: string) {
    this.stream = Fs.createWriteStream(file)
  }

  write(record: Record) {
    this.stream.write(`${JSON.stringify(record)}\n`)
  }

  close(): Promise<void> {
    if (this.stream.writableEnded) return Promise.resolve()
    return new Promise((resolve, reject) => this.stream.end((error?: Error | null) => (error ? reject(error) : resolve())))
  }
}

const decodeLine = Schema.decodeUnknownSync(Schema.parseJson(Record))

/** Reads a history file back, checking every line against the schema. */
export const read = async (file: string): Promise<Array<Record>> => {
  const records: Array<Record> = []
  let line = 0
  for await (const text of Readline.createInterface({ input: Fs.createReadStream(file), crlfDelay: Infinity })) {
    line++
    if (text === "") continue
    try {
      records.push(decodeLine(text))
    } catch (error) {
      throw new Error(`${file}:${line}: not a history record: ${error instanceof Error ? error.message : String(error)}`)
    }
  }
  return records
}
