/**
 * Gives the test run a PostgreSQL server: TEST_DATABASE_URL when set (a role that may create
 * databases), else an embedded one started here and stopped when the run ends. Each test file
 * makes its own database on it (see TestDatabase).
 */
import { Effect, Exit, Redacted, Scope } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"
import * as EmbeddedPostgres from "../../src/Storage/EmbeddedPostgres.js"
import { freePort } from "./freePort.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** A URL, with a role that can create databases, to the `postgres` database of the test server. */
    readonly databaseUrl: string
  }
}

export default async function setup(project: TestProject) {
  const external = process.env.TEST_DATABASE_URL
  if (external !== undefined && external !== "") {
    project.provide("databaseUrl", external)
    return
  }
  const folder = await Fs.mkdtemp(Path.join(Os.tmpdir(), "pollcast-test-"))
  // The server runs as another user when the tests run as root: it must be able to reach its folder.
  await Fs.chmod(folder, 0o755)
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    EmbeddedPostgres.start({ dataDir: Path.join(folder, "postgres"), port: await freePort() }).pipe(
      Scope.extend(scope),
      // Said plainly: the run cannot go on without its database.
      Effect.tapError((error) => Effect.sync(() => console.error(`\nThe tests' PostgreSQL did not start: ${error.message}\n`)))
    )
  )
  project.provide("databaseUrl", Redacted.value(server.url("postgres")))
  return async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await Fs.rm(folder, { recursive: true, force: true })
  }
}
