/**
 * A real PgBouncer in transaction mode in front of a test database, started for as long as the
 * scope lasts: Debian's `pgbouncer` (installed by .ci/run when missing). PgBouncer refuses to run
 * as root; then it runs as `nobody`, with its files readable by it.
 */
import { Effect, Redacted } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { freePort } from "./freePort.js"

export const binary = "/usr/sbin/pgbouncer"
export const available = Fs.existsSync(binary)

export interface PgBouncer {
  /** The same database, through the pooler. */
  readonly url: Redacted.Redacted
}

const reachable = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

/** PgBouncer in transaction mode, at most `poolSize` server connections, in front of `database`. */
export const start = (database: Redacted.Redacted, poolSize = 5) =>
  Effect.gen(function*() {
    const target = new URL(Redacted.value(database))
    const name = target.pathname.slice(1)
    const port = yield* Effect.promise(freePort)
    const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pollcast-pgbouncer-"))
    Fs.chmodSync(folder, 0o755)
    const config = Path.join(folder, "pgbouncer.ini")
    const server = [
      `host=${target.hostname}`,
      `port=${target.port || "5432"}`,
      `dbname=${name}`,
      `user=${decodeURIComponent(target.username)}`,
      `password=${decodeURIComponent(target.password)}`
    ].join(" ")
    Fs.writeFileSync(
      config,
      [
        "[databases]",
        `${name} = ${server}`,
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        `listen_port = ${port}`,
        "unix_socket_dir =",
        "auth_type = trust",
        `auth_file = ${Path.join(folder, "users.txt")}`,
        "pool_mode = transaction",
        `default_pool_size = ${poolSize}`,
        "max_client_conn = 200",
        "ignore_startup_parameters = extra_float_digits,options"
      ].join("\n") + "\n"
    )
    Fs.writeFileSync(Path.join(folder, "users.txt"), `"${decodeURIComponent(target.username)}" ""\n`)
    for (const file of Fs.readdirSync(folder)) Fs.chmodSync(Path.join(folder, file), 0o644)
    const asRoot = process.getuid?.() === 0
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(binary, [...(asRoot ? ["-u", "nobody"] : []), config], { stdio: ["ignore", "pipe", "pipe"] })
      ),
      (child) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill("SIGTERM")
        }).pipe(
          Effect.timeoutTo({ duration: "5 seconds", onSuccess: () => undefined, onTimeout: () => child.kill("SIGKILL") }),
          Effect.ensuring(Effect.sync(() => Fs.rmSync(folder, { recursive: true, force: true })))
        )
    )
    let output = ""
    child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()))
    // Up once it accepts connections.
    for (let attempt = 0; !(yield* Effect.promise(() => reachable(port))); attempt++) {
      if (attempt === 100 || child.exitCode !== null) {
        return yield* Effect.die(new Error(`PgBouncer did not start: ${output}`))
      }
      yield* Effect.sleep("50 millis")
    }
    const url = new URL(target)
    url.port = String(port)
    url.hostname = "127.0.0.1"
    return { url: Redacted.make(url.toString()) } satisfies PgBouncer
  })
