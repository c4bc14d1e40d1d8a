/**
 * The web page at `/` and its assets (src/web), read once at start-up and served from memory with
 * no build step. Asset URLs carry a hash of their content, so browsers may keep them for a year;
 * the page itself is revalidated on every load (ETag), so a new version is picked up at once.
 */
import { FileSystem, HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { fileURLToPath } from "node:url"
import { NotFound } from "../Domain/Errors.js"
import { pathOf } from "./Request.js"

interface Asset {
  readonly body: Uint8Array
  readonly contentType: string
  readonly etag: string
  readonly cacheControl: string
}

const webFolder = fileURLToPath(new URL("../web/", import.meta.url))

/** The assets, each after those it imports (`./name`), whose hashed paths are written into it. */
const assetTypes = {
  "wants.js": "text/javascript; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
  "icon.svg": "image/svg+xml"
} as const

const pageHeaders = {
  "content-security-policy":
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer"
}

const hashOf = (body: Uint8Array) => createHash("sha256").update(body).digest("hex").slice(0, 16)

const matches = (ifNoneMatch: string | undefined, etag: string) =>
  ifNoneMatch !== undefined &&
  ifNoneMatch.split(",").some((candidate) => {
    const tag = candidate.trim()
    return tag === "*" || tag === etag || tag === `W/${etag}`
  })

const respond = (asset: Asset) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    const headers = { etag: asset.etag, "cache-control": asset.cacheControl, ...pageHeaders }
    return matches(request.headers["if-none-match"], asset.etag)
      ? HttpServerResponse.empty({ status: 304, headers })
      : HttpServerResponse.uint8Array(asset.body, { contentType: asset.contentType, headers })
  })

const pagePath = "/"
const assetsPath = "/assets/:name"

/** The paths served here. */
export const paths = [pagePath, assetsPath]

export const routes = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const assets = new Map<string, Asset>()
  let html = new TextDecoder().decode(yield* fs.readFile(`${webFolder}index.html`))
  const hashed: Array<readonly [string, string]> = []
  for (const [name, contentType] of Object.entries(assetTypes)) {
    let body = yield* fs.readFile(`${webFolder}${name}`)
    if (name.endsWith(".js")) {
      const source = hashed.reduce((text, [imported, path]) => text.replaceAll(`"./${imported}"`, `"${path}"`), new TextDecoder().decode(body))
      body = new TextEncoder().encode(source)
    }
    const hash = hashOf(body)
    const dot = name.lastIndexOf(".")
    const path = `/assets/${name.slice(0, dot)}.${hash}${name.slice(dot)}`
    hashed.push([name, path])
    html = html.replaceAll(`/assets/${name}`, path)
    assets.set(path, { body, contentType, etag: `"${hash}"`, cacheControl: "public, max-age=31536000, immutable" })
  }
  const pageBody = new TextEncoder().encode(html)
  const page: Asset = {
    body: pageBody,
    contentType: "text/html; charset=utf-8",
    etag: `"${hashOf(pageBody)}"`,
    cacheControl: "no-cache"
  }

  return HttpRouter.empty.pipe(
    HttpRouter.get(pagePath, respond(page)),
    HttpRouter.get(
      assetsPath,
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const path = pathOf(request.url)
        const asset = assets.get(path)
        return asset === undefined ? Effect.fail(new NotFound({ message: `No asset at ${path}` })) : respond(asset)
      })
    )
  )
})
