/**
 * Writes docs/screenshot.png (laptop) and docs/screenshot-phone.png for the README: starts the
 * service on a fresh embedded database, posts a short conversation, and photographs the page in
 * Debian's Chromium. Run with `npm run screenshot`.
 */
import * as Path from "node:path"
import { chromium } from "playwright-core"
import { launchOptions } from "../test/support/Browser.js"
import { build, root, startService } from "./support/ServiceProcess.js"

const conversation = [
  ["ada", "Morning all 👋 deploy of v2.3 starts in five minutes"],
  ["grace", "Database migrations are done, 0.8 s on production"],
  ["ci-bot", "✅ v2.3 is live on 12 of 12 nodes"],
  ["linus", "Latency p99 back to 41 ms.\nGraphs: dashboards/api-latency"],
  ["mallory", "<img src=x onerror=alert(1)> — shown as text, never as HTML"]
] as const

build()
const service = await startService({ POLL_INTERVAL: "100 millis" })
try {
  for (const [author, body] of conversation) {
    await fetch(`${service.url}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channel: "ops", author, body })
    })
  }
  const browser = await chromium.launch(launchOptions)
  for (const [file, viewport, scale] of [
    ["screenshot.png", { width: 1000, height: 620 }, 1],
    ["screenshot-phone.png", { width: 390, height: 760 }, 1]
  ] as const) {
    const page = await browser.newPage({ viewport, deviceScaleFactor: scale, colorScheme: "light" })
    await page.goto(`${service.url}/#ops`)
    await page.waitForSelector("#status[data-state=\"live\"]")
    await page.locator("#messages .message").nth(conversation.length - 1).waitFor()
    await page.fill("#author", "you")
    await page.fill("#body", "Nice work, everyone!")
    await page.screenshot({ path: Path.join(root, "docs", file) })
    console.log(`wrote docs/${file}`)
  }
  await browser.close()
} finally {
  await service.stop()
}
