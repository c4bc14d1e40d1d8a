/**
 * What the soak runs and breaks: one PostgreSQL (embedded in a temporary folder, which it can stop
 * and start again on the same port, or a fresh database on the server at DATABASE_URL), and
 * pollcast nodes as child processes (`node dist/main.js`), each reaching the database through a
 * TCP proxy of its own that can cut or stall the link. Everything is held in the enclosing Scope;
 * child processes are also killed if the soak itself exits abruptly (support/ServiceProcess.ts).
 */
import { Deferred, Duration, Effect, Exit, Redacted, Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import pg from "pg"
import * as Database from "../../src/Storage/Database.js"
import * as EmbeddedPostgres from "../../src/Storage/EmbeddedPostgres.js"
import * as ServiceProcess from "../support/ServiceProcess.js"
import * as TcpProxy from "../support/TcpProxy.js"

export class SoakError extends Error {}

export interface SoakDatabase {
  /** The soak's database, directly (not through a proxy). */
  readonly url: Redacted.Redacted
  readonly canRestart: boolean
  /** Stops the server, waits `downFor`, starts it again on the same folder and port. */
  readonly restart: (downFor: Duration.DurationInput) => Effect.Effect<void, SoakError>
  readonly describe: string
}

const withDatabase = (url: string, name: string) => {
  const parsed = new URL(url)
  parsed.pathname = `/${name}`
  return parsed.toString()
}

/** A fresh database on the server at `external`, dropped afterwards. */
const externalDatabase = (external: string) =>
  Effect.gen(function*() {
    const admin = Redacted.make(withDatabase(external, "postgres"))
    const name = `pollcast_soak_${process.pid}_${Date.now()}`
    yield* Effect.acquireRelease(
      Database.ensureDatabase(admin, name).pipe(Effect.mapError((error) => new SoakError(`Could not create ${name}: ${error.message}`))),
      () =>
        Effect.promise(async () => {
          const client = new pg.Client({ connectionString: Redacted.value(admin) })
          await client.connect()
          await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
          await client.end()
        }).pipe(Effect.catchAllDefect(() => Effect.logWarning(`Could not drop the soak database ${name}`)))
    )
    return {
      url: Redacted.make(withDatabase(external, name)),
      canRestart: false,
      restart: () => Effect.fail(new SoakError("The soak cannot restart a server given by DATABASE_URL")),
      describe: `database ${name} on the server at DATABASE_URL`
    } satisfies SoakDatabase
  })

/** An embedded server in a temporary folder, removed afterwards. */
const embeddedDatabase = Effect.gen(function*() {
  const folder = yield* ServiceProcess.temporaryFolder("pollcast-soak-")
  const port = yield* ServiceProcess.freePort
  const options = { dataDir: Path.join(folder, "postgres"), port }
  let current = yield* Scope.make()
  yield* Effect.addFinalizer(() => Scope.close(current, Exit.void))
  const start = Effect.suspend(() => EmbeddedPostgres.start(options).pipe(Scope.extend(current))).pipe(
    Effect.mapError((error) => new SoakError(error.message))
  )
  const server = yield* start
  yield* Database.ensureDatabase(server.url("postgres"), Database.databaseName).pipe(
    Effect.mapError((error) => new SoakError(`Could not create the database: ${error.message}`))
  )
  return {
    url: server.url(Database.databaseName),
    canRestart: true,
    restart: (downFor) =>
      Effect.gen(function*() {
        yield* Scope.close(current, Exit.void)
        current = yield* Scope.make()
        yield* Effect.sleep(downFor)
        yield* start
      }),
    describe: `embedded PostgreSQL on port ${port}, data in ${folder}`
  } satisfies SoakDatabase
})

export const database = Effect.suspend((): Effect.Effect<SoakDatabase, SoakError, Scope.Scope> => {
  const external = process.env.DATABASE_URL
  return external !== undefined && external !== "" ? externalDatabase(external) : embeddedDatabase
})

export interface NodeEvents {
  /** The node exited when nobody meant it to. */
  readonly unexpectedExit: (node: SoakNode, description: string) => void
  /** A start attempt failed (the node exits at start-up while the database is unreachable). */
  readonly startFailed: (node: SoakNode, attempt: number, output: string) => void
}

type NodeState = "down" | "starting" | "up" | "frozen"

/** One pollcast node: its port stays the same across restarts, its link to the database is its proxy. */
export class SoakNode {
  state: NodeState = "down"
  /** The process, and the scope that stops it and removes its data folder. */
  private running: { readonly service: ServiceProcess.RunningService; readonly scope: Scope.CloseableScope } | undefined
  private exitExpected = false
  private exited: Deferred.Deferred<string> | undefined

  constructor(
    readonly index: number,
    readonly port: number,
    readonly proxy: TcpProxy.TcpProxy,
    private readonly env: Record<string, string>,
    private readonly logFile: string,
    private readonly events: NodeEvents
  ) {}

  get url() {
    return `http://127.0.0.1:${this.port}`
  }

  get pid() {
    return this.running?.service.pid
  }

  /** Starts the node, retrying (as a supervisor would) while it fails at start-up, for up to two minutes. */
  readonly start: Effect.Effect<void, SoakError> = Effect.gen(this, function*() {
    this.state = "starting"
    for (let attempt = 1;; attempt++) {
      // No timeout: a node either listens or exits (its database connection times out in 5 s).
      const scope = yield* Scope.make()
      const started = yield* ServiceProcess.start(this.env, { port: this.port }).pipe(
        Scope.extend(scope),
        Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, Exit.void))),
        Effect.either
      )
      if (started._tag === "Right") {
        const service = started.right
        this.running = { service, scope }
        this.exitExpected = false
        const exited = yield* Deferred.make<string>()
        this.exited = exited
        this.state = "up"
        service.child.once("exit", (code, signal) => {
          const description = signal === null ? `exit code ${code}` : signal
          this.log(`--- exited: ${description}\n${service.output()}`)
          Deferred.unsafeDone(exited, Exit.succeed(description))
          if (!this.exitExpected) {
            this.state = "down"
            this.running = undefined
            // Nothing will stop it now: remove its data folder.
            Effect.runFork(Scope.close(scope, Exit.void))
            this.events.unexpectedExit(this, description)
          }
        })
        return
      }
      const output = started.left.message
      this.log(`--- start attempt ${attempt} failed\n${output}`)
      this.events.startFailed(this, attempt, output)
      if (attempt >= 60) {
        this.state = "down"
        return yield* Effect.fail(new SoakError(`node ${this.index} did not start in ${attempt} attempts`))
      }
      yield* Effect.sleep("2 seconds")
    }
  })

  /**
   * Sends `signal` to a node that is meant to exit, and waits up to `timeout` for it to; then
   * SIGKILL. Returns how it exited and how long it took, or undefined if it was not running.
   */
  stop(signal: "SIGKILL" | "SIGTERM", timeout: Duration.DurationInput = "15 seconds") {
    return Effect.gen(this, function*() {
      const running = this.running
      const exited = this.exited
      if (running === undefined || exited === undefined || this.state === "down") return undefined
      this.exitExpected = true
      const began = performance.now()
      const { child } = running.service
      if (this.state === "frozen") child.kill("SIGCONT")
      child.kill(signal)
      const outcome = yield* Deferred.await(exited).pipe(Effect.timeout(timeout), Effect.option)
      if (outcome._tag === "None") {
        child.kill("SIGKILL")
        yield* Deferred.await(exited)
      }
      yield* Scope.close(running.scope, Exit.void)
      this.running = undefined
      this.state = "down"
      return { description: outcome._tag === "Some" ? outcome.value : "no exit in time: killed", millis: performance.now() - began }
    })
  }

  /**
   * Which process is running and how many times it has logged cutting off clients that did not
   * keep up (the soak reads the node's log as an operator would).
   */
  cutOffs() {
    const output = this.running?.service.output() ?? ""
    return { pid: this.running?.service.pid, count: output.match(/Disconnected \d+ client/g)?.length ?? 0 }
  }

  freeze() {
    if (this.state !== "up" || this.running === undefined) return false
    this.running.service.child.kill("SIGSTOP")
    this.state = "frozen"
    return true
  }

  thaw() {
    if (this.state !== "frozen" || this.running === undefined) return
    this.running.service.child.kill("SIGCONT")
    this.state = "up"
  }

  private log(text: string) {
    Fs.appendFileSync(this.logFile, `${text}\n`)
  }
}

/** A proxy to the database and a node behind it, for each of `count` nodes, stopped with the scope. */
export const nodes = (options: {
  readonly count: number
  readonly database: Redacted.Redacted
  readonly settings: Record<string, string>
  readonly folder: string
  readonly events: NodeEvents
}) =>
  Effect.gen(function*() {
    const created = yield* Effect.forEach(Array.from({ length: options.count }, (_, index) => index), (index) =>
      Effect.gen(function*() {
        const proxy = yield* TcpProxy.start(options.database)
        const port = yield* ServiceProcess.freePort
        const node = new SoakNode(
          index,
          port,
          proxy,
          { ...options.settings, DATABASE_URL: Redacted.value(proxy.url) },
          Path.join(options.folder, `node-${index}.log`),
          options.events
        )
        yield* Effect.addFinalizer(() => node.stop("SIGTERM"))
        return node
      }))
    // All at once, as after a deployment: their migrations race on a fresh database.
    yield* Effect.forEach(created, (node) => node.start, { concurrency: "unbounded", discard: true })
    return created
  })
