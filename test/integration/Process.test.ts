/**
 * The service as a process: start-up on an embedded PostgreSQL, shutdown on SIGTERM and SIGINT,
 * data kept across restarts, and a clear refusal of bad settings.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { freePort } from "../support/freePort.js"
import * as ServiceProcess from "../../scripts/support/ServiceProcess.js"
import { eventually } from "../support/SseClient.js"

const dataDir = ServiceProcess.temporaryFolder("pollcast-process-")

const settings = Effect.gen(function*() {
  return {
    DATA_DIR: yield* dataDir,
    PORT: String(yield* Effect.promise(freePort)),
    EMBEDDED_POSTGRES_PORT: String(yield* Effect.promise(freePort)),
    POLL_INTERVAL: "100 millis"
  }
})

const started = (service: ServiceProcess.ServiceProcess) =>
  eventually(Effect.sync(service.output), (output) => output.includes("Listening on"), "60 seconds", "the service to start")

const accepts = (port: string) =>
  Effect.async<boolean>((resume) => {
    const socket = Net.connect(Number(port), "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

const post = (port: string, body: string) =>
  Effect.promise(() =>
    fetch(`http://127.0.0.1:${port}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channel: "process", body })
    }).then((response) => response.json() as Promise<{ id: string }>)
  )

/** Opens /events with plain fetch, to see exactly how its body ends. */
const openEvents = (port: string) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}/events?channel=process`)
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let text = ""
    const readUntil = async (done: (text: string) => boolean) => {
      while (!done(text)) {
        const chunk = await reader.read()
        if (chunk.done) return { text, ended: true }
        text += decoder.decode(chunk.value, { stream: true })
      }
      return { text, ended: false }
    }
    return { readUntil }
  })

describe("the service process", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it.live(`on ${signal} ends event streams, stops its embedded PostgreSQL and exits 0`, () =>
      Effect.gen(function*() {
        const env = yield* settings
        const service = yield* ServiceProcess.spawn(env)
        yield* started(service)
        const events = yield* openEvents(env.PORT)
        const posted = yield* post(env.PORT, "hello")
        yield* Effect.promise(() => events.readUntil((text) => text.includes(posted.id)))
        expect(yield* accepts(env.EMBEDDED_POSTGRES_PORT)).toBe(true)

        service.child.kill(signal)
        const exit = yield* service.exited.pipe(Effect.timeoutFail({
          duration: "10 seconds",
          onTimeout: () => new Error(`still running 10 seconds after ${signal}:\n${service.output()}`)
        }))
        expect(exit).toEqual({ code: 0, signal: null })
        // The stream ended cleanly (not reset), the database server is gone, and it said so.
        const end = yield* Effect.promise(() => events.readUntil(() => false))
        expect(end.ended).toBe(true)
        expect(yield* accepts(env.EMBEDDED_POSTGRES_PORT)).toBe(false)
        expect(Fs.existsSync(Path.join(env.DATA_DIR, "postgres", "postmaster.pid"))).toBe(false)
        expect(service.output()).toContain("Embedded PostgreSQL stopped")
      }).pipe(Effect.scoped), 60_000)
  }

  it.live("keeps messages in DATA_DIR across a restart", () =>
    Effect.gen(function*() {
      const env = yield* settings
      const first = yield* ServiceProcess.spawn(env)
      yield* started(first)
      const posted = yield* post(env.PORT, "survives restarts")
      first.child.kill("SIGTERM")
      expect((yield* first.exited).code).toBe(0)

      const second = yield* ServiceProcess.spawn(env)
      yield* started(second)
      const history = yield* Effect.promise(() =>
        fetch(`http://127.0.0.1:${env.PORT}/messages?channel=process`).then((response) => response.json() as Promise<{ messages: Array<unknown> }>)
      )
      expect(history.messages).toEqual([expect.objectContaining({ id: posted.id, body: "survives restarts" })])
      second.child.kill("SIGTERM")
      expect((yield* second.exited).code).toBe(0)
    }).pipe(Effect.scoped), 90_000)

  it.live("comes back after kill -9: stops the PostgreSQL server the killed node left running, and starts", () =>
    Effect.gen(function*() {
      const env = yield* settings
      const first = yield* ServiceProcess.spawn(env)
      yield* started(first)
      const posted = yield* post(env.PORT, "before the crash")
      first.child.kill("SIGKILL")
      yield* first.exited
      // The orphan: still serving, still holding its port and lock file.
      expect(yield* accepts(env.EMBEDDED_POSTGRES_PORT)).toBe(true)

      const second = yield* ServiceProcess.spawn(env)
      yield* started(second)
      expect(second.output()).toMatch(/Stopped the embedded PostgreSQL \(pid \d+\) that a previous pollcast \(pid \d+\)/)
      const history = yield* Effect.promise(() =>
        fetch(`http://127.0.0.1:${env.PORT}/messages?channel=process`).then((response) => response.json() as Promise<{ messages: Array<{ id: string }> }>)
      )
      expect(history.messages.map((message) => message.id)).toEqual([posted.id])
      second.child.kill("SIGTERM")
      expect((yield* second.exited).code).toBe(0)
    }).pipe(Effect.scoped), 90_000)

  it.live("refuses a data folder that another live pollcast is using, and leaves that one running", () =>
    Effect.gen(function*() {
      const env = yield* settings
      const first = yield* ServiceProcess.spawn(env)
      yield* started(first)
      const second = yield* ServiceProcess.spawn({ ...env, PORT: String(yield* Effect.promise(freePort)) })
      const exit = yield* second.exited
      expect(exit.code).not.toBe(0)
      expect(second.output()).toContain(`is in use by another pollcast (pid ${first.child.pid})`)
      expect(second.output()).not.toMatch(/^\s+at /m)
      // The first one still stores and serves.
      const posted = yield* post(env.PORT, "still here")
      expect(posted.id).toMatch(/^[0-9a-f]{16}-[0-9a-f]{16}$/)
      first.child.kill("SIGTERM")
      expect((yield* first.exited).code).toBe(0)
    }).pipe(Effect.scoped), 90_000)

  it.live("under `npm start`, stops on a SIGTERM sent to npm (as a container runtime sends it)", () =>
    Effect.gen(function*() {
      const env = yield* settings
      const service = yield* ServiceProcess.spawn(env, ["npm", "start", "--silent"])
      yield* started(service)
      service.child.kill("SIGTERM")
      const exit = yield* service.exited.pipe(Effect.timeoutFail({
        duration: "10 seconds",
        onTimeout: () => new Error(`npm still running 10 seconds after SIGTERM:\n${service.output()}`)
      }))
      expect(exit.code).toBe(0)
      // The service itself stopped, not just npm: its port and its database are closed.
      yield* eventually(accepts(env.PORT), (open) => !open, "5 seconds", "the service to stop")
      expect(yield* accepts(env.EMBEDDED_POSTGRES_PORT)).toBe(false)
      expect(service.output()).toContain("Embedded PostgreSQL stopped")
    }).pipe(Effect.scoped), 90_000)

  it.live("with LOG_FORMAT=json writes one JSON object per line, an access line per request with its fields", () =>
    Effect.gen(function*() {
      const env = yield* settings
      const service = yield* ServiceProcess.spawn({ ...env, LOG_FORMAT: "json" })
      yield* started(service)
      yield* Effect.promise(() =>
        fetch(`http://127.0.0.1:${env.PORT}/messages?access_token=not-for-the-log`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ channel: "process", body: "logged" })
        })
      )
      const lines = () =>
        service.output().split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as Record<string, unknown>)
      const access = yield* eventually(
        Effect.sync(() => lines().find((line) => line.message === "POST /messages 201")),
        (line) => line !== undefined,
        "5 seconds",
        "the access line"
      )
      expect(access).toMatchObject({
        logLevel: "INFO",
        annotations: { method: "POST", path: "/messages", status: 201, client: "127.0.0.1" }
      })
      expect(typeof (access!.annotations as { durationMs: unknown }).durationMs).toBe("number")
      expect(lines().some((line) => String(line.message).startsWith("Listening on"))).toBe(true)
      expect(service.output()).not.toContain("not-for-the-log")
      service.child.kill("SIGTERM")
      expect((yield* service.exited).code).toBe(0)
    }).pipe(Effect.scoped), 60_000)

  it.live("fails promptly, saying why, with a DATA_DIR where no folder can be made (under /proc)", () =>
    Effect.gen(function*() {
      const env = yield* settings
      const service = yield* ServiceProcess.spawn({ ...env, DATA_DIR: "/proc/pollcast-data" })
      const exit = yield* service.exited.pipe(Effect.timeoutFail({
        duration: "15 seconds",
        onTimeout: () => new Error(`still starting 15 seconds later:\n${service.output()}`)
      }))
      expect(exit.code).not.toBe(0)
      expect(service.output()).toMatch(/Start-up failed: .*\/proc\/pollcast-data/)
    }).pipe(Effect.scoped), 30_000)

  it.live("refuses an invalid setting at start-up, naming it, with a non-zero exit code", () =>
    Effect.gen(function*() {
      const env = yield* settings
      const service = yield* ServiceProcess.spawn({ ...env, POLL_INTERVAL: "banana" })
      const exit = yield* service.exited
      expect(exit.code).not.toBe(0)
      expect(service.output()).toMatch(/Invalid configuration: .*POLL_INTERVAL/)
      expect(Fs.existsSync(Path.join(env.DATA_DIR, "postgres"))).toBe(false)
    }).pipe(Effect.scoped), 30_000)
})
