/**
 * Many tabs of one browser: they share one event stream (src/web/app.js), so that over HTTP/1.1,
 * where a browser opens at most six connections to an origin, every tab shows live messages and
 * can still post.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type { Page } from "playwright-core"
import * as Browser from "../support/Browser.js"
import * as TestClient from "../support/TestClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"
import * as Tokens from "../support/Tokens.js"

const live = (page: Page) =>
  Effect.promise(() => page.waitForSelector("#status[data-state=\"live\"]", { timeout: 15_000 }))

const bodies = (page: Page) =>
  Effect.promise(() => page.$$eval("#messages .message .body", (items) => items.map((item) => item.textContent ?? "")))

const ids = (page: Page) =>
  Effect.promise(() => page.$$eval("#messages .message", (items) => items.map((item) => item.getAttribute("data-id") ?? "")))

const messageCount = (page: Page, count: number) =>
  Effect.promise(() => page.locator("#messages .message").nth(count - 1).waitFor({ timeout: 5_000 }))

const type = (page: Page, body: string) =>
  Effect.promise(async () => {
    await page.fill("#body", body)
    await page.press("#body", "Enter")
  })

/** Lets anything that would arrive late (a duplicate, say) arrive before asserting. */
const settle = Effect.sleep("500 millis")

layer(Layer.merge(TestDatabase.layer, Browser.Browser.layer), { timeout: 120_000, excludeTestServices: true })(
  "tabs of one browser",
  (it) => {
    it.scoped("8 tabs over HTTP/1.1 all show a new message and each can post, over one event stream", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const { errors, pages } = yield* Browser.openTabs(node.url("/#e2e-tabs"), 8)
        yield* Effect.forEach(pages, live, { concurrency: "unbounded" })
        const streams = yield* node.connections
        console.log(`event streams open on the node with 8 tabs of one browser: ${streams}`)
        expect(streams).toBe(1)

        yield* TestClient.publish(node, { channel: "e2e-tabs", body: "to every tab" })
        yield* Effect.forEach(pages, (page) => messageCount(page, 1), { concurrency: "unbounded" })

        yield* Effect.forEach(pages, (page, i) => type(page, `from tab ${i + 1}`), { concurrency: "unbounded" })
        yield* Effect.forEach(pages, (page) => messageCount(page, 9), { concurrency: "unbounded" })
        yield* settle
        for (const page of pages) {
          const shown = yield* bodies(page)
          expect(shown[0]).toBe("to every tab")
          expect(new Set(shown.slice(1))).toEqual(new Set(pages.map((_, i) => `from tab ${i + 1}`)))
        }
        expect(errors).toEqual([])
      }))

    it.scoped("closing the tab that holds the stream hands it over: no message lost or shown twice", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const { errors, pages, tab } = yield* Browser.openTabs(node.url("/#e2e-handover"), 1)
        // The first tab takes the lock, so it holds the stream.
        yield* live(pages[0]!)
        const others = [yield* tab(), yield* tab()]
        yield* Effect.forEach(others, live)
        const bodiesPosted: Array<string> = []
        const publish = (body: string) => {
          bodiesPosted.push(body)
          return TestClient.publish(node, { channel: "e2e-handover", body })
        }
        for (let i = 1; i <= 5; i++) yield* publish(`before ${i}`)
        yield* Effect.forEach(others, (page) => messageCount(page, 5))
        // Posted while the leader closes and another tab takes over.
        yield* Effect.all([
          Effect.promise(() => pages[0]!.close()),
          Effect.forEach(Array.from({ length: 20 }, (_, i) => i + 1), (i) => publish(`during ${i}`))
        ], { concurrency: "unbounded" })
        for (let i = 1; i <= 5; i++) yield* publish(`after ${i}`)
        yield* Effect.forEach(others, (page) => messageCount(page, bodiesPosted.length))
        yield* settle
        for (const page of others) {
          expect(yield* bodies(page)).toEqual(bodiesPosted)
          expect(new Set(yield* ids(page)).size).toBe(bodiesPosted.length)
        }
        expect(yield* node.connections).toBe(1)
        expect(errors).toEqual([])
      }))

    it.scoped("freezing the tab that holds the stream hands it over; thawed, it shows what it missed, each once", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const { errors, pages, tab } = yield* Browser.openTabs(node.url("/#e2e-freeze"), 1)
        const leader = pages[0]!
        yield* live(leader)
        const others = [yield* tab(), yield* tab()]
        yield* Effect.forEach(others, live)
        const bodiesPosted: Array<string> = []
        const publish = (body: string) => {
          bodiesPosted.push(body)
          return TestClient.publish(node, { channel: "e2e-freeze", body })
        }
        for (let i = 1; i <= 3; i++) yield* publish(`before ${i}`)
        yield* Effect.forEach([leader, ...others], (page) => messageCount(page, 3))

        // Frozen as a browser freezes a background tab (Page Lifecycle): the page is told (`freeze`),
        // then runs no code until thawed. Headless Chromium freezes no tab by itself, and ignores
        // CDP's Page.setWebLifecycleState for a visible page: the event is dispatched, and the
        // debugger holds the page's code from the next task on.
        const session = yield* Effect.promise(() => leader.context().newCDPSession(leader))
        yield* Effect.promise(() => leader.evaluate("document.dispatchEvent(new Event(\"freeze\"))"))
        yield* Effect.promise(() => session.send("Debugger.enable"))
        yield* Effect.promise(() => session.send("Debugger.pause"))
        for (let i = 1; i <= 10; i++) yield* publish(`while frozen ${i}`)
        yield* Effect.forEach(others, (page) => messageCount(page, bodiesPosted.length))
        expect(yield* node.connections).toBe(1)

        yield* Effect.promise(() => session.send("Debugger.resume"))
        yield* Effect.promise(() => leader.evaluate("document.dispatchEvent(new Event(\"resume\"))"))
        for (let i = 1; i <= 2; i++) yield* publish(`after ${i}`)
        yield* Effect.forEach([leader, ...others], (page) => messageCount(page, bodiesPosted.length))
        yield* settle
        for (const page of [leader, ...others]) {
          expect(yield* bodies(page)).toEqual(bodiesPosted)
          expect(new Set(yield* ids(page)).size).toBe(bodiesPosted.length)
        }
        expect(yield* node.connections).toBe(1)
        expect(errors).toEqual([])
      }))

    it.scoped("two tabs on different channels each see only their own, over one stream", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const { pages, tab } = yield* Browser.openTabs(node.url("/#e2e-left"), 1)
        const right = yield* tab(node.url("/#e2e-right"))
        const left = pages[0]!
        yield* Effect.forEach([left, right], live)
        yield* TestClient.publish(node, { channel: "e2e-left", body: "left 1" })
        yield* TestClient.publish(node, { channel: "e2e-right", body: "right 1" })
        yield* TestClient.publish(node, { channel: "e2e-left", body: "left 2" })
        yield* messageCount(left, 2)
        yield* messageCount(right, 1)
        yield* settle
        expect(yield* bodies(left)).toEqual(["left 1", "left 2"])
        expect(yield* bodies(right)).toEqual(["right 1"])
        expect(yield* node.connections).toBe(1)

        // Switching channels in one tab follows the new one, from its history on.
        yield* Effect.promise(() => right.evaluate("location.hash = '#e2e-left'"))
        yield* messageCount(right, 2)
        yield* TestClient.publish(node, { channel: "e2e-left", body: "left 3" })
        yield* TestClient.publish(node, { channel: "e2e-right", body: "right 2" })
        yield* messageCount(right, 3)
        yield* messageCount(left, 3)
        yield* settle
        expect(yield* bodies(right)).toEqual(["left 1", "left 2", "left 3"])
        expect(yield* bodies(left)).toEqual(["left 1", "left 2", "left 3"])
      }))

    it.scoped("with access control, a tab never receives messages of a channel its own token may not read", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        const token = (rights: Tokens.Rights, sub: string) => Effect.promise(() => Tokens.hs256(rights, { sub }))
        const publisher = yield* token({ publish: ["*"] }, "publisher")
        const both = yield* token({ subscribe: ["e2e-open", "e2e-secret"] }, "both")
        const openOnly = yield* token({ subscribe: ["e2e-open"] }, "open-only")
        const post = (channel: string, body: string) =>
          Effect.promise(async () => {
            const response = await fetch(node.url("/messages"), {
              method: "POST",
              headers: { "content-type": "application/json", authorization: `Bearer ${publisher}` },
              body: JSON.stringify({ channel, body })
            })
            if (response.status !== 201) throw new Error(`POST /messages answered ${response.status}`)
          })
        // Every tab records everything any BroadcastChannel and EventSource of it receives.
        const record = `
          window.__received = []
          const Channel = BroadcastChannel
          window.BroadcastChannel = class extends Channel {
            constructor(name) {
              super(name)
              this.addEventListener("message", (event) => window.__received.push(JSON.stringify(event.data)))
            }
          }
          const Source = EventSource
          window.EventSource = class extends Source {
            constructor(url, init) {
              super(url, init)
              for (const kind of ["message", "reset"]) this.addEventListener(kind, (event) => window.__received.push(event.data))
            }
          }`
        const { pages, tab } = yield* Browser.openTabs(node.url(`/#e2e-secret&token=${both}`), 1, { initScript: record })
        const secretTab = pages[0]!
        yield* live(secretTab)
        const openTabs = [yield* tab(node.url(`/#e2e-open&token=${openOnly}`)), yield* tab(node.url(`/#e2e-open&token=${openOnly}`))]
        yield* Effect.forEach(openTabs, live)
        yield* post("e2e-secret", "the secret")
        yield* post("e2e-open", "for everyone")
        yield* messageCount(secretTab, 1)
        yield* Effect.forEach(openTabs, (page) => messageCount(page, 1))
        yield* settle
        expect(yield* bodies(secretTab)).toEqual(["the secret"])
        for (const page of openTabs) {
          expect(yield* bodies(page)).toEqual(["for everyone"])
          const received = yield* Effect.promise((): Promise<Array<string>> => page.evaluate("window.__received"))
          expect(received.some((data) => data.includes("for everyone"))).toBe(true)
          expect(received.filter((data) => data.includes("the secret"))).toEqual([])
        }
        // One stream per token: the two tabs with the same token share theirs.
        expect(yield* node.connections).toBe(2)
      }))
  }
)
