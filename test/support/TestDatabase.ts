/**
 * A database of its own for each test file, on the run's test server (see globalSetup), migrated,
 * and dropped when the file is done.
 */
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { inject } from "vitest"
import * as Database from "../../src/Storage/Database.js"

export class TestDatabase extends Context.Tag("test/TestDatabase")<TestDatabase, {
  readonly name: string
  readonly url: Redacted.Redacted
}>() {}

const dropDatabase = (admin: Redacted.Redacted, name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`
  }).pipe(Effect.provide(Database.client(admin, 1)))

const withDatabase = (url: Redacted.Redacted, name: string) => {
  const parsed = new URL(Redacted.value(url))
  parsed.pathname = `/${name}`
  return Redacted.make(parsed.toString())
}

const fresh = Layer.scoped(
  TestDatabase,
  Effect.gen(function*() {
    const admin = Redacted.make(inject("databaseUrl"))
    const name = `pollcast_test_${randomBytes(6).toString("hex")}`
    yield* Effect.acquireRelease(
      Database.ensureDatabase(admin, name),
      () => dropDatabase(admin, name).pipe(Effect.orDie)
    )
    const url = withDatabase(admin, name)
    yield* Database.migrate.pipe(Effect.provide(Database.client(url, 1)))
    return { name, url }
  }).pipe(Effect.orDie)
)

/** The TestDatabase and a SqlClient on it (for tests that write or inspect rows themselves). */
export const layer = Layer.unwrapEffect(
  Effect.map(TestDatabase, (database) => Database.client(database.url, 10).pipe(Layer.orDie))
).pipe(Layer.provideMerge(fresh))
