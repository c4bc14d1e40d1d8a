/**
 * The page through the proxy recipe of docs/many-tabs.md (Caddy, docs/Caddyfile): HTTP/2 to the
 * browser, so that a tab's requests no longer wait for one of six connections. Skipped where Caddy
 * is not installed (Debian: `apt-get install caddy`).
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import * as Fs from "node:fs"
import * as Https from "node:https"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Page } from "playwright-core"
import * as Browser from "../support/Browser.js"
import { freePort } from "../support/freePort.js"
import * as ServiceProcess from "../../scripts/support/ServiceProcess.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

const caddy = process.env.CADDY_PATH ?? "/usr/bin/caddy"
const recipe = Path.join(ServiceProcess.root, "docs/Caddyfile")

/** Caddy running docs/Caddyfile in front of `upstream`, with a certificate of its own local CA. */
const startCaddy = (upstream: string) =>
  Effect.gen(function*() {
    const home = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "pollcast-caddy-"))),
      (folder) => Effect.sync(() => Fs.rmSync(folder, { recursive: true, force: true }))
    )
    const [port, httpPort] = yield* Effect.promise(() => Promise.all([freePort(), freePort()]))
    // Only what a test needs around the recipe: no admin endpoint, a local CA kept out of the
    // system's trust store, no port 80.
    const config = Path.join(home, "Caddyfile")
    Fs.writeFileSync(
      config,
      `{\n\tadmin off\n\tlocal_certs\n\tskip_install_trust\n\tauto_https disable_redirects\n\thttp_port ${httpPort}\n\tdefault_bind 127.0.0.1\n}\nimport ${recipe}\n`
    )
    const caddyProcess = yield* ServiceProcess.spawn(
      {
        HOME: home,
        XDG_DATA_HOME: Path.join(home, "data"),
        XDG_CONFIG_HOME: Path.join(home, "config"),
        POLLCAST_SITE: `https://localhost:${port}`,
        POLLCAST_NODES: upstream
      },
      [caddy, "run", "--config", config, "--adapter", "caddyfile"]
    )
    const healthy = Effect.async<number, Error>((resume) => {
      const request = Https.get(
        { host: "127.0.0.1", port, path: "/healthz", servername: "localhost", rejectUnauthorized: false },
        (response) => {
          response.resume()
          resume(response.statusCode === 200 ? Effect.succeed(200) : Effect.fail(new Error(`${response.statusCode}`)))
        }
      )
      request.on("error", (error) => resume(Effect.fail(error)))
    })
    yield* healthy.pipe(
      Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.upTo("20 seconds"))),
      Effect.catchAll((error) => Effect.dieMessage(`Caddy did not start: ${error.message}\n${caddyProcess.output()}`))
    )
    return { url: (path: string) => `https://localhost:${port}${path}` }
  })

const live = (page: Page) =>
  Effect.promise(() => page.waitForSelector("#status[data-state=\"live\"]", { timeout: 15_000 }))

const messageCount = (page: Page, count: number) =>
  Effect.promise(() => page.locator("#messages .message").nth(count - 1).waitFor({ timeout: 5_000 }))

// Each tab on a stream of its own, as where tabs cannot share one: over HTTP/2 all of them fit.
const noSharing = "Object.defineProperty(window, 'BroadcastChannel', { value: undefined })"

layer(Layer.merge(TestDatabase.layer, Browser.Browser.layer), { timeout: 120_000, excludeTestServices: true })(
  "through the HTTP/2 proxy of docs/Caddyfile",
  (it) => {
    it.scoped.skipIf(!Fs.existsSync(caddy))("8 tabs with a stream each all show a new message and can post", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ TRUST_PROXY: "1" })
        const proxy = yield* startCaddy(new URL(node.url("/")).host)
        const { errors, pages } = yield* Browser.openTabs(proxy.url("/#e2e-h2"), 8, { ignoreHTTPSErrors: true, initScript: noSharing })
        yield* Effect.forEach(pages, live, { concurrency: "unbounded" })
        const protocols = yield* Effect.forEach(pages, (page) =>
          Effect.promise((): Promise<string> => page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")))
        expect(new Set(protocols)).toEqual(new Set(["h2"]))
        const streams = yield* node.connections
        console.log(`event streams open on the node with 8 unshared tabs through Caddy (HTTP/2): ${streams}`)
        expect(streams).toBe(8)

        yield* Effect.forEach(pages, (page, i) =>
          Effect.promise(async () => {
            await page.fill("#body", `from tab ${i + 1}`)
            await page.press("#body", "Enter")
          }), { concurrency: "unbounded" })
        yield* Effect.forEach(pages, (page) => messageCount(page, 8), { concurrency: "unbounded" })
        expect(errors).toEqual([])
      }))
  }
)
