/**
 * The typed client in a browser: its `events` streams, in every tab of one origin and token,
 * share one connection (src/client/TabHub.ts), so that over HTTP/1.1, where a browser opens at
 * most six connections to an origin, every tab's stream is live and each yields its own channel,
 * every message once; closing the tab that holds the connection hands it over, losing nothing.
 */
import { expect, layer } from "@effect/vitest"
import { build } from "esbuild"
import { Effect, Layer } from "effect"
import * as Path from "node:path"
import type { Page } from "playwright-core"
import * as Browser from "../support/Browser.js"
import * as SseClient from "../support/SseClient.js"
import * as TestClient from "../support/TestClient.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"
import * as Tokens from "../support/Tokens.js"

/** The fixture bundled for the browser, run in every tab before the page's own scripts. */
const bundle = Effect.promise(async () => {
  const result = await build({
    entryPoints: [Path.join(import.meta.dirname, "fixtures/clientTabs.ts")],
    bundle: true,
    format: "iife",
    platform: "browser",
    write: false,
    logLevel: "silent"
  })
  return result.outputFiles[0]!.text
})

interface Received {
  readonly id: string
  readonly channel: string
  readonly body: string
}

const received = (page: Page) => Effect.promise(() => page.evaluate("received") as Promise<Array<Received>>)
const follow = (page: Page, channel: string, shareTabs = true, token?: string) =>
  Effect.promise(() => page.evaluate(`follow(${JSON.stringify(channel)}, ${shareTabs}, ${JSON.stringify(token)})`))

layer(Layer.merge(TestDatabase.layer, Browser.Browser.layer), { timeout: 120_000, excludeTestServices: true })(
  "the typed client in tabs of one browser",
  (it) => {
    it.scoped("8 tabs' streams over HTTP/1.1 share one connection, each yields its own channel once, and survive the holder closing", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        // A page of the node's origin (any will do): the fixture runs in it.
        const { errors, pages } = yield* Browser.openTabs(node.url("/healthz"), 8, { initScript: yield* bundle })
        yield* Effect.forEach(pages, (page) => Effect.promise(() => page.waitForFunction("typeof follow === 'function'")))
        const channelOf = (index: number) => (index % 2 === 0 ? "client-a" : "client-b")
        for (const [index, page] of pages.entries()) yield* follow(page, channelOf(index))
        yield* SseClient.eventually(node.connections, (open) => open === 1, "10 seconds", "one shared stream")

        const posted: Array<{ channel: string; body: string }> = []
        const publish = (channel: string, body: string) => {
          posted.push({ channel, body })
          return TestClient.publish(node, { channel, body })
        }
        const expectEverything = (tabs: ReadonlyArray<{ readonly page: Page; readonly channel: string }>) =>
          Effect.forEach(tabs, ({ channel, page }) =>
            Effect.gen(function*() {
              const wanted = posted.filter((message) => message.channel === channel).map((message) => message.body)
              yield* SseClient.eventually(received(page), (got) => got.length >= wanted.length, "20 seconds", `${channel} in a tab`)
              yield* Effect.sleep("300 millis")
              const got = yield* received(page)
              expect(got.map((message) => message.body)).toEqual(wanted)
              expect(new Set(got.map((message) => message.id)).size).toBe(got.length)
            }))

        for (let i = 1; i <= 3; i++) {
          yield* publish("client-a", `a ${i}`)
          yield* publish("client-b", `b ${i}`)
        }
        yield* expectEverything(pages.map((page, index) => ({ page, channel: channelOf(index) })))

        // The first tab asked for the lock first: it holds the connection. Closed while messages come.
        yield* Effect.all([
          Effect.promise(() => pages[0]!.close()),
          Effect.forEach(Array.from({ length: 10 }, (_, i) => i + 1), (i) => publish(i % 2 === 0 ? "client-a" : "client-b", `during ${i}`))
        ], { concurrency: "unbounded" })
        for (let i = 1; i <= 2; i++) yield* publish("client-a", `after ${i}`)
        yield* expectEverything(pages.slice(1).map((page, index) => ({ page, channel: channelOf(index + 1) })))
        yield* SseClient.eventually(node.connections, (open) => open === 1, "10 seconds", "one shared stream")
        expect(yield* Effect.forEach(pages.slice(1), (page) => Effect.promise(() => page.evaluate("failures")))).toEqual(
          pages.slice(1).map(() => [])
        )
        expect(errors).toEqual([])
      }))

    it.scoped("without sharing, the same 8 tabs' streams hold six connections and the last tabs get nothing", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const { pages } = yield* Browser.openTabs(node.url("/healthz"), 8, { initScript: yield* bundle })
        yield* Effect.forEach(pages, (page) => Effect.promise(() => page.waitForFunction("typeof follow === 'function'")))
        for (const page of pages) yield* follow(page, "client-a", false)
        yield* SseClient.eventually(node.connections, (open) => open === 6, "10 seconds", "six streams")
        yield* TestClient.publish(node, { channel: "client-a", body: "to every tab" })
        yield* SseClient.eventually(received(pages[0]!), (got) => got.length === 1, "10 seconds", "the first tab's message")
        yield* Effect.sleep("1 second")
        const counts = yield* Effect.forEach(pages, (page) => Effect.map(received(page), (got) => got.length))
        console.log(`event streams open with 8 tabs of the typed client, unshared: ${yield* node.connections}; messages per tab: ${counts.join(", ")}`)
        expect(counts.filter((count) => count === 0).length).toBe(2)
      }))

    it.scoped("with access control, a tab's stream never gets messages its own token may not read", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        const reader = yield* Effect.promise(() => Tokens.hs256({ subscribe: ["client-secret"] }, { sub: "reader" }))
        const outsider = yield* Effect.promise(() => Tokens.hs256({ subscribe: ["client-open"] }, { sub: "outsider" }))
        const { pages } = yield* Browser.openTabs(node.url("/healthz"), 3, { initScript: yield* bundle })
        yield* Effect.forEach(pages, (page) => Effect.promise(() => page.waitForFunction("typeof follow === 'function'")))
        const [first, second, third] = pages as [Page, Page, Page]
        yield* follow(first, "client-secret", true, reader)
        // Another token: another group, so its streams never ride on the reader's connection.
        yield* follow(second, "client-secret", true, outsider)
        yield* follow(third, "client-open", true, outsider)
        yield* SseClient.eventually(node.connections, (open) => open === 2, "10 seconds", "one stream per token")
        const publisher = yield* Effect.promise(() => Tokens.hs256({ publish: ["*"] }, { sub: "publisher" }))
        for (const channel of ["client-secret", "client-open"]) {
          yield* Effect.promise(() =>
            fetch(node.url("/messages"), {
              method: "POST",
              headers: { "content-type": "application/json", authorization: `Bearer ${publisher}` },
              body: JSON.stringify({ channel, body: `on ${channel}` })
            })
          )
        }
        yield* SseClient.eventually(received(first), (got) => got.length === 1, "10 seconds", "the reader's message")
        yield* SseClient.eventually(received(third), (got) => got.length === 1, "10 seconds", "the outsider's message")
        yield* Effect.sleep("1 second")
        expect((yield* received(first)).map((message) => message.body)).toEqual(["on client-secret"])
        expect((yield* received(third)).map((message) => message.body)).toEqual(["on client-open"])
        expect(yield* received(second)).toEqual([])
        expect(String(yield* Effect.promise(() => second.evaluate("failures")))).toContain("403")
      }))
  }
)
