/**
 * Debian's Chromium driven by playwright-core, one per test file, with the flags this sandboxed
 * and offline machine needs.
 */
import { Context, Effect, Layer } from "effect"
import { chromium, type Browser as PlaywrightBrowser, type Page } from "playwright-core"

export const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

export const launchOptions = {
  executablePath,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic"
  ]
}

export class Browser extends Context.Tag("test/Browser")<Browser, PlaywrightBrowser>() {
  static readonly layer = Layer.scoped(
    Browser,
    Effect.acquireRelease(
      Effect.promise(() => chromium.launch(launchOptions)),
      (browser) => Effect.promise(() => browser.close())
    )
  )
}

export interface OpenPage {
  readonly page: Page
  /** Every `alert`, `confirm` or `prompt` the page tried to open. */
  readonly dialogs: Array<string>
  /** Uncaught errors in the page's scripts. */
  readonly errors: Array<string>
}

/** A new page (its own context: storage, cookies) at `url`, closed with the scope. */
export const open = (url: string, viewport = { width: 1100, height: 720 }) =>
  Effect.gen(function*() {
    const browser = yield* Browser
    const context = yield* Effect.acquireRelease(
      Effect.promise(() => browser.newContext({ viewport })),
      (context) => Effect.promise(() => context.close())
    )
    const page = yield* Effect.promise(() => context.newPage())
    const dialogs: Array<string> = []
    const errors: Array<string> = []
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message())
      void dialog.dismiss()
    })
    page.on("pageerror", (error) => errors.push(error.message))
    yield* Effect.promise(() => page.goto(url))
    return { page, dialogs, errors } satisfies OpenPage
  })

/** `count` tabs of one browser profile (one context: cookies, storage, connections), each at `url`. */
export const openTabs = (url: string, count: number, options: { readonly ignoreHTTPSErrors?: boolean; readonly initScript?: string } = {}) =>
  Effect.gen(function*() {
    const browser = yield* Browser
    const context = yield* Effect.acquireRelease(
      Effect.promise(() => browser.newContext({ viewport: { width: 800, height: 600 }, ignoreHTTPSErrors: options.ignoreHTTPSErrors ?? false })),
      (context) => Effect.promise(() => context.close())
    )
    if (options.initScript !== undefined) yield* Effect.promise(() => context.addInitScript(options.initScript!))
    const errors: Array<string> = []
    const tab = (target = url) =>
      Effect.promise(async () => {
        const page = await context.newPage()
        page.on("pageerror", (error) => errors.push(error.message))
        // Not waited for: over HTTP/1.1 the browser may hold a tab's requests back for ever.
        void page.goto(target).catch(() => undefined)
        return page
      })
    const pages: Array<Page> = []
    for (let i = 0; i < count; i++) pages.push(yield* tab())
    return { context, pages, errors, tab }
  })
