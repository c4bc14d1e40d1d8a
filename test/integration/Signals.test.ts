/**
 * Stopped as a terminal or a service manager stops it: `npm start` in a fresh copy of the checkout,
 * with the default data folder, then signals to npm's whole process group — what Ctrl-C sends, and
 * what `kill -TERM -<pgid>` (or systemd) sends. npm forwards what it got to the node, so the node
 * gets each signal twice.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { freePort } from "../support/freePort.js"
import * as ServiceProcess from "../../scripts/support/ServiceProcess.js"
import { eventually } from "../support/SseClient.js"

const postmasterPid = (checkout: string) => Path.join(checkout, ".pollcast", "postgres", "postmaster.pid")

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** What a fresh clone holds that `npm start` needs, with this checkout's installed packages. */
const freshCheckout = Effect.acquireRelease(
  Effect.sync(() => {
    const folder = Fs.mkdtempSync(Path.join(Os.tmpdir(), "pollcast-checkout-"))
    // The embedded server runs as another user when the tests run as root.
    Fs.chmodSync(folder, 0o755)
    for (const entry of ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", "src"]) {
      Fs.cpSync(Path.join(ServiceProcess.root, entry), Path.join(folder, entry), { recursive: true })
    }
    Fs.symlinkSync(Path.join(ServiceProcess.root, "node_modules"), Path.join(folder, "node_modules"))
    return folder
  }),
  (folder) =>
    Effect.sync(() => {
      // Should a test fail with the server still up, it is stopped rather than left behind.
      const pid = Fs.existsSync(postmasterPid(folder)) ? Number(Fs.readFileSync(postmasterPid(folder), "utf8").split("\n")[0]) : 0
      if (pid > 0 && alive(pid)) process.kill(pid, "SIGQUIT")
      Fs.rmSync(folder, { recursive: true, force: true })
    })
)

const json = <A>(url: string, init?: RequestInit) =>
  Effect.promise(() => fetch(url, init).then((response) => response.json() as Promise<A>))

const npmStart = (checkout: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    const service = yield* ServiceProcess.spawn(env, ["npm", "start", "--silent"], {
      cwd: checkout,
      processGroup: true,
      unset: ["DATA_DIR", "DATABASE_URL"]
    })
    yield* eventually(Effect.sync(service.output), (output) => output.includes("Listening on"), "60 seconds", "the service to start")
    const serverPid = Number(Fs.readFileSync(postmasterPid(checkout), "utf8").split("\n")[0])
    return { service, serverPid, group: service.child.pid! }
  })

/** Every process of the group and the PostgreSQL server gone within 15 s, and the log saying so. */
const stoppedCompletely = (started: Effect.Effect.Success<ReturnType<typeof npmStart>>) =>
  Effect.gen(function*() {
    yield* eventually(
      Effect.sync(() => alive(-started.group) || alive(started.serverPid)),
      (running) => !running,
      "15 seconds",
      `the node's processes and PostgreSQL to stop:\n${started.service.output()}`
    )
    expect(started.service.output()).toContain("Embedded PostgreSQL stopped")
    expect(started.service.output()).toContain("pollcast stopped")
  })

const ways = [
  { name: "SIGINT to the process group (Ctrl-C)", signals: ["SIGINT"] },
  { name: "SIGTERM to the process group", signals: ["SIGTERM"] },
  { name: "two SIGINTs to the process group, 100 ms apart", signals: ["SIGINT", "SIGINT"] }
] as const

describe("npm start in a fresh checkout", () => {
  for (const way of ways) {
    it.live(`stops completely on ${way.name}, and the next start finds nothing left behind`, () =>
      Effect.gen(function*() {
        const checkout = yield* freshCheckout
        const env = {
          PORT: String(yield* Effect.promise(freePort)),
          EMBEDDED_POSTGRES_PORT: String(yield* Effect.promise(freePort))
        }
        const first = yield* npmStart(checkout, env)
        const posted = yield* json<{ id: string }>(`http://127.0.0.1:${env.PORT}/messages`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ channel: "signals", body: way.name })
        })
        for (const [index, signal] of way.signals.entries()) {
          if (index > 0) yield* Effect.sleep("100 millis")
          process.kill(-first.group, signal)
        }
        yield* stoppedCompletely(first)

        const second = yield* npmStart(checkout, env)
        expect(second.service.output()).not.toContain("left running")
        const history = yield* json<{ messages: Array<{ id: string }> }>(`http://127.0.0.1:${env.PORT}/messages?channel=signals`)
        expect(history.messages.map((message) => message.id)).toEqual([posted.id])
        process.kill(-second.group, "SIGTERM")
        yield* stoppedCompletely(second)
      }).pipe(Effect.scoped), 120_000)
  }
})
