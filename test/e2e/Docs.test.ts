/**
 * The API's reference page at /docs, in a real Chromium: it renders the document from
 * /openapi.json under its Content-Security-Policy, with nothing refused and nothing from elsewhere.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Browser from "../support/Browser.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

layer(Layer.merge(TestDatabase.layer, Browser.Browser.layer), { timeout: 120_000, excludeTestServices: true })(
  "API reference page",
  (it) => {
    it.scoped("shows every endpoint group and GET /events' event format, with no console error and no outside request", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const origin = new URL(node.url("/")).origin
        const requested: Array<string> = []
        const browser = yield* Browser.Browser
        // Every request the page makes, from its first: a context of its own, listened to before loading.
        const context = yield* Effect.acquireRelease(
          Effect.promise(() => browser.newContext()),
          (context) => Effect.promise(() => context.close())
        )
        context.on("request", (request) => requested.push(request.url()))
        const consoleErrors: Array<string> = []
        const pageErrors: Array<string> = []
        const page = yield* Effect.promise(() => context.newPage())
        page.on("console", (message) => {
          if (message.type() === "error") consoleErrors.push(message.text())
        })
        page.on("pageerror", (error) => pageErrors.push(error.message))
        const response = yield* Effect.promise(() => page.goto(node.url("/docs")))
        expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'")
        yield* Effect.promise(() => page.getByText("Publish a message").first().waitFor({ timeout: 30_000 }))
        // The events group opens on a click in the sidebar.
        yield* Effect.promise(() => page.getByText("events", { exact: true }).first().click())
        yield* Effect.promise(() => page.getByText("Follow channels live (Server-Sent Events)").first().waitFor({ timeout: 30_000 }))
        const text = yield* Effect.promise(() => page.locator("body").innerText())
        for (const group of ["messages", "events", "operations"]) expect(text).toContain(group)
        // Settle: anything loaded late would be refused now.
        yield* Effect.sleep("1 second")
        expect(pageErrors).toEqual([])
        expect(consoleErrors).toEqual([])
        expect(requested.filter((url) => !url.startsWith(origin) && !url.startsWith("data:"))).toEqual([])
        expect(requested).toContain(`${origin}/openapi.json`)
      }))
  }
)
