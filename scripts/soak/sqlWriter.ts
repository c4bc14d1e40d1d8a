/**
 * Another system writing to the messages table with plain SQL, as the README allows: small
 * transactions of one to three rows, now and then one rolled back, and, when told to, one held
 * open for seconds (which holds every node's delivery back until it ends). Each row's outcome is
 * recorded: committed (acked), rolled back, failed before COMMIT was sent (not stored), or
 * unknown when COMMIT itself got no answer.
 */
import { Deferred, Duration, Effect, Hash } from "effect"
import type { PCGRandom } from "effect/Utils"
import pg from "pg"
import { messageId } from "../../src/Domain/Message.js"
import type { HistoryWriter } from "./history.js"
import { body } from "./publisher.js"

interface Hold {
  readonly millis: number
  readonly done: Deferred.Deferred<{ readonly start: number; readonly end: number; readonly detail: string }>
}

export class SqlWriter {
  private sequence = 0
  private client: pg.Client | undefined
  private hold: Hold | undefined
  committed = 0

  constructor(
    private readonly url: string,
    private readonly channels: ReadonlyArray<string>,
    private readonly random: PCGRandom,
    private readonly history: HistoryWriter,
    private readonly now: () => number
  ) {}

  /** Writes transactions until interrupted; a transaction under way is finished (and recorded) first. */
  readonly run = Effect.suspend(() => this.transaction().pipe(Effect.zipRight(Effect.suspend(() => Effect.sleep(Duration.millis(100 + this.random.integer(300))))))).pipe(
    Effect.forever,
    Effect.ensuring(Effect.sync(() => this.disconnect(this.client)))
  )

  /**
   * Holds the next transaction open for `duration`; completes once it has ended, with its span, or
   * with none if no transaction could be held within two minutes (the database was out of reach).
   */
  holdNext(duration: Duration.DurationInput) {
    return Effect.gen(this, function*() {
      const done = yield* Deferred.make<{ readonly start: number; readonly end: number; readonly detail: string }>()
      const hold = { millis: Duration.toMillis(duration), done }
      this.hold = hold
      return yield* Deferred.await(done).pipe(
        Effect.timeoutOption("2 minutes"),
        Effect.ensuring(Effect.sync(() => {
          if (this.hold === hold) this.hold = undefined
        }))
      )
    })
  }

  /** Writes one row to `channel` in a transaction of its own (never rolled back), and answers its outcome. */
  writeOne(key: string, channel: string) {
    return Effect.uninterruptible(Effect.promise(() => this.write([{ key, channel, text: body(key, this.random) }], undefined, false)))
  }

  private transaction() {
    const rows = Array.from({ length: 1 + this.random.integer(3) }, () => {
      const key = `q${++this.sequence}`
      return { key, channel: this.channels[this.random.integer(this.channels.length)]!, text: body(key, this.random) }
    })
    const hold = this.hold
    this.hold = undefined
    return Effect.uninterruptible(Effect.promise(() => this.write(rows, hold, hold === undefined && this.random.number() < 0.05)))
  }

  private async connect() {
    if (this.client !== undefined) return this.client
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 5000, query_timeout: 10_000 })
    client.on("error", () => this.disconnect(client))
    this.client = client
    // connect() can be left pending by a client ended meanwhile: never wait longer than its timeout.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      client.connect(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("connect timed out")), 6000)))
    ]).finally(() => clearTimeout(timer))
    return client
  }

  /** Ends `client`, and forgets it if it is the current one (another may have replaced it). */
  private disconnect(client: pg.Client | undefined) {
    if (client === undefined) return
    if (this.client === client) this.client = undefined
    client.end().catch(() => undefined)
  }

  private async write(rows: ReadonlyArray<{ key: string; channel: string; text: string }>, hold: Hold | undefined, rollBack: boolean) {
    const start = this.now()
    let stage: "before" | "commit" = "before"
    let ids: Array<string> = []
    let heldFrom = 0
    let outcome: "acked" | "unknown" | "failed" | "rolledback"
    let error: string | undefined
    let client: pg.Client | undefined
    try {
      client = await this.connect()
      await client.query("BEGIN")
      const values = rows.map((_, i) => `($${3 * i + 1}, $${3 * i + 2}, $${3 * i + 3})`).join(", ")
      const inserted = await client.query<{ id: string; txid: string }>(
        `INSERT INTO messages (channel, author, body) VALUES ${values} RETURNING id::text, txid::text`,
        rows.flatMap((row) => [row.channel, "soak-sql", row.text])
      )
      ids = inserted.rows.map((row) => messageId(row.txid, row.id))
      if (hold !== undefined) {
        heldFrom = this.now()
        await new Promise((resolve) => setTimeout(resolve, hold.millis))
      }
      stage = "commit"
      await client.query(rollBack ? "ROLLBACK" : "COMMIT")
      outcome = rollBack ? "rolledback" : "acked"
      if (!rollBack) this.committed += rows.length
    } catch (cause) {
      // Broken before COMMIT was sent, the transaction cannot have committed; during it, who knows.
      outcome = stage === "commit" && !rollBack ? "unknown" : "failed"
      error = cause instanceof Error ? cause.message : String(cause)
      this.disconnect(client ?? this.client)
    }
    const end = this.now()
    rows.forEach((row, i) =>
      this.history.write({
        _tag: "write",
        src: "sql",
        key: row.key,
        ch: row.channel,
        h: Hash.string(row.text),
        start,
        end,
        outcome,
        ...(ids[i] === undefined ? {} : { id: ids[i] }),
        ...(error === undefined ? {} : { error })
      })
    )
    // A transaction that broke before it could be held leaves the hold to the next one.
    if (hold !== undefined && heldFrom === 0 && outcome === "failed") {
      this.hold ??= hold
    } else if (hold !== undefined) {
      Deferred.unsafeDone(hold.done, Effect.succeed({
        start: heldFrom === 0 ? start : heldFrom,
        end,
        detail: `${rows.length} row(s), ${outcome === "acked" ? "committed" : outcome}${error === undefined ? "" : ` (${error})`}`
      }))
    }
    return outcome
  }
}
