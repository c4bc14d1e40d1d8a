/**
 * The web page in a real Chromium against a service that checks access tokens.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type { Page } from "playwright-core"
import * as Browser from "../support/Browser.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"
import * as Tokens from "../support/Tokens.js"

const token = (rights: Tokens.Rights, options: Tokens.Options = {}) => Effect.promise(() => Tokens.hs256(rights, options))

const post = (node: TestNode.TestNode, publisher: string, message: { channel: string; body: string }) =>
  Effect.promise(async () => {
    const response = await fetch(node.url("/messages"), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${publisher}` },
      body: JSON.stringify(message)
    })
    if (response.status !== 201) throw new Error(`POST /messages answered ${response.status}`)
  })

const state = (page: Page, value: string) =>
  Effect.promise(() => page.waitForSelector(`#status[data-state="${value}"]`))

const bodies = (page: Page) =>
  Effect.promise(() => page.$$eval("#messages .message .body", (items) => items.map((item) => item.textContent ?? "")))

const messageCount = (page: Page, count: number) =>
  Effect.promise(() => page.locator("#messages .message").nth(count - 1).waitFor({ timeout: 20_000 }))

layer(Layer.merge(TestDatabase.layer, Browser.Browser.layer), { timeout: 120_000, excludeTestServices: true })(
  "web page with access control",
  (it) => {
    it.scoped("with a token that may read a but not b, shows a live and a clear refusal for b", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        const publisher = yield* token({ publish: ["*"] }, { sub: "publisher" })
        const reader = yield* token({ subscribe: ["a"], publish: ["a"] }, { sub: "ada" })
        yield* post(node, publisher, { channel: "a", body: "before the page opened" })

        const { errors, page } = yield* Browser.open(node.url(`/#a&token=${reader}`))
        yield* state(page, "live")
        // The token left the URL at once.
        expect(new URL(page.url()).hash).toBe("#a")
        expect(yield* Effect.promise(() => page.textContent("#identity-name"))).toBe("Signed in as ada")
        yield* messageCount(page, 1)
        yield* post(node, publisher, { channel: "a", body: "live on a" })
        yield* messageCount(page, 2)
        expect(yield* bodies(page)).toEqual(["before the page opened", "live on a"])

        // Posting from the page stores the message under the token's name.
        yield* Effect.promise(async () => {
          await page.fill("#body", "typed by ada")
          await page.press("#body", "Enter")
        })
        yield* messageCount(page, 3)
        const authors = yield* Effect.promise(() => page.$$eval("#messages .author", (items) => items.map((item) => item.textContent)))
        expect(authors[2]).toBe("ada")

        yield* Effect.promise(async () => {
          await page.fill("#channel", "b")
          await page.click("#channel-form button")
        })
        yield* state(page, "refused")
        expect(yield* Effect.promise(() => page.textContent("#refused"))).toBe("You may not read #b with this token.")
        expect(yield* Effect.promise(() => page.isVisible("#refused"))).toBe(true)
        expect(yield* Effect.promise(() => page.locator("#messages .message").count())).toBe(0)
        expect(errors).toEqual([])
      }))

    it.scoped("asks for a token when the channel needs one, and goes live once it is given", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        const { page } = yield* Browser.open(node.url("/#members"))
        yield* state(page, "refused")
        expect(yield* Effect.promise(() => page.isVisible("#token-form"))).toBe(true)
        expect(yield* Effect.promise(() => page.textContent("#token-prompt"))).toContain("An access token is needed")

        yield* Effect.promise(async () => {
          await page.fill("#token", "not a token")
          await page.click("#token-form button")
        })
        expect(yield* Effect.promise(() => page.textContent("#token-prompt"))).toContain("not an access token")

        const member = yield* token({ subscribe: ["members"] }, { sub: "grace" })
        yield* Effect.promise(async () => {
          await page.fill("#token", member)
          await page.click("#token-form button")
        })
        yield* state(page, "live")
        expect(yield* Effect.promise(() => page.isHidden("#token-form"))).toBe(true)
        expect(yield* Effect.promise(() => page.isHidden("#refused"))).toBe(true)
        yield* post(node, yield* token({ publish: ["*"] }), { channel: "members", body: "welcome" })
        yield* messageCount(page, 1)
      }))

    it.scoped("when the stream's token expires, asks for a new one and then shows what was posted meanwhile", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ AUTH_SECRET: Tokens.secret, AUTH_CLOCK_TOLERANCE: "0 seconds", SSE_RETRY: "200 millis" })
        const publisher = yield* token({ publish: ["*"] })
        // Long enough for the browser to start and the page to go live on a loaded machine (at 2 s, the
        // token had sometimes expired before the page connected: it never showed live).
        const shortLived = yield* token({ subscribe: ["expiry"] }, { expiresIn: 6 })
        const { page } = yield* Browser.open(node.url(`/#expiry&token=${shortLived}`))
        yield* state(page, "live")
        yield* post(node, publisher, { channel: "expiry", body: "before expiry" })
        yield* messageCount(page, 1)

        yield* Effect.promise(() => page.waitForSelector("#token-form:not([hidden])", { timeout: 20_000 }))
        expect(yield* Effect.promise(() => page.textContent("#token-prompt"))).toContain("has expired")
        yield* post(node, publisher, { channel: "expiry", body: "while signed out" })

        const fresh = yield* token({ subscribe: ["expiry"] })
        yield* Effect.promise(async () => {
          await page.fill("#token", fresh)
          await page.click("#token-form button")
        })
        yield* state(page, "live")
        yield* messageCount(page, 2)
        expect(yield* bodies(page)).toEqual(["before expiry", "while signed out"])
      }))
  }
)
