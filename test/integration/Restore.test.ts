/**
 * A database dumped from one PostgreSQL and restored into a fresh one: the stored transaction ids
 * are ahead of the new server's counter. pollcast refuses to serve it, `npm run repair` renumbers
 * the messages, and delivery is then correct.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Database from "../../src/Storage/Database.js"
import * as EmbeddedPostgres from "../../src/Storage/EmbeddedPostgres.js"
import { messageId } from "../../src/Domain/Message.js"
import { freePort } from "../support/freePort.js"
import * as ServiceProcess from "../../scripts/support/ServiceProcess.js"
import * as SseClient from "../support/SseClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

interface Row {
  readonly id: string
  readonly txid: string
  readonly channel: string
  readonly author: string
  readonly body: string
  readonly created_at: Date
}

/** A new PostgreSQL cluster of its own, its transaction counter where initdb left it. */
const freshServer = Effect.gen(function*() {
  const folder = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pollcast-restore-"))
      Fs.chmodSync(folder, 0o755)
      return folder
    }),
    (folder) => Effect.sync(() => Fs.rmSync(folder, { recursive: true, force: true }))
  )
  const server = yield* EmbeddedPostgres.start({
    dataDir: Path.join(folder, "postgres"),
    port: yield* Effect.promise(freePort)
  })
  yield* Database.ensureDatabase(server.url("postgres"), Database.databaseName)
  return server.url(Database.databaseName)
})

/** What restoring `pg_dump --data-only` does for the messages: every column as stored, ids kept, one transaction. */
const restore = (rows: ReadonlyArray<Row>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(Effect.gen(function*() {
    for (const row of rows) {
      yield* sql`
        INSERT INTO messages (id, txid, channel, author, body, created_at) OVERRIDING SYSTEM VALUE
        VALUES (${row.id}::bigint, ${row.txid}::xid8, ${row.channel}, ${row.author}, ${row.body}, ${row.created_at})`
    }
    yield* sql`SELECT setval(pg_get_serial_sequence('messages', 'id'), (SELECT max(id) FROM messages))`
  })))

const exitOf = (service: ServiceProcess.ServiceProcess) =>
  service.exited.pipe(
    Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error(`still running:\n${service.output()}`) })
  )

layer(TestDatabase.layer, { timeout: 180_000, excludeTestServices: true })("restore from a dump", (it) => {
  it.scoped("is refused until repaired, then serves every message in its order and only new ones live", () =>
    Effect.gen(function*() {
      const source = yield* SqlClient.SqlClient
      // 600 messages on three channels, one transaction each, on a server that has been busy.
      for (let i = 1; i <= 600; i++) {
        yield* source`INSERT INTO messages (channel, author, body) VALUES (${`c${i % 3}`}, 'origin', ${`m${i}`})`
      }
      const dumped = yield* source<Row>`SELECT id::text, txid::text, channel, author, body, created_at FROM messages ORDER BY messages.txid, messages.id`

      const url = yield* freshServer
      yield* Database.migrate.pipe(Effect.zipRight(restore(dumped)), Effect.provide(Database.client(url, 1)))
      const target = Database.client(url, 2).pipe(Layer.orDie)
      const counter = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql<{ readonly next: string }>`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next`).pipe(
          Effect.provide(target)
        )
      // The trap: the restored transaction ids are ahead of the new server's counter.
      expect(BigInt(dumped[dumped.length - 1]!.txid)).toBeGreaterThan(BigInt(counter[0]!.next))

      const env = { DATABASE_URL: Redacted.value(url), PORT: String(yield* Effect.promise(freePort)) }
      const refused = yield* ServiceProcess.spawn(env)
      expect((yield* exitOf(refused)).code).not.toBe(0)
      expect(refused.output()).toContain("npm run repair")

      const repair = yield* ServiceProcess.spawn(env, [process.execPath, "--import", "tsx", "src/repair.ts"])
      expect((yield* exitOf(repair)).code).toBe(0)
      expect(repair.output()).toContain("Renumbered 600 message(s)")

      const node = yield* TestNode.start({}, { databaseUrl: url })
      const page = yield* Effect.promise(() =>
        fetch(node.url("/messages?limit=500")).then((response) =>
          response.json() as Promise<{ messages: Array<{ id: string; body: string }>; previous: string }>
        )
      )
      const older = yield* Effect.promise(() =>
        fetch(node.url(`/messages?limit=500&before=${page.previous}`)).then((response) =>
          response.json() as Promise<{ messages: Array<{ body: string }> }>
        )
      )
      expect([...older.messages, ...page.messages].map((message) => message.body)).toEqual(dumped.map((row) => row.body))

      // Live: only what is new, however many polls go by; an old id is told to reset.
      const live = yield* SseClient.connected(node.url("/events"))
      const fresh = yield* Effect.promise(() =>
        fetch(node.url("/messages"), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ channel: "c1", body: "after the restore" })
        }).then((response) => response.json() as Promise<{ id: string }>)
      )
      yield* live.waitUntil(() => live.messages.length === 1)
      yield* Effect.sleep("1 second")
      expect(live.messages.map((message) => message.id)).toEqual([fresh.id])
      // A client that had the newest message before the restore holds an id that no longer exists.
      const newestBefore = dumped[dumped.length - 1]!
      const oldClient = yield* SseClient.connected(node.url("/events"), {
        lastEventId: messageId(newestBefore.txid, newestBefore.id)
      })
      yield* oldClient.waitUntil(() => oldClient.resets.length > 0)
      expect(oldClient.resets[0]).toMatchObject({ reason: "ahead", lastEventId: fresh.id })
    }))
})
