/**
 * The API's description: `GET /openapi.json` (OpenAPI 3.1, derived from src/Api.ts) and a reference
 * page at `GET /docs`, rendered by Scalar — the very build that @effect/platform's HttpApiScalar
 * inlines into its page, served here as a file of its own from node_modules, so that the page runs
 * under a Content-Security-Policy without inline scripts and loads nothing from elsewhere.
 */
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import * as Zlib from "node:zlib"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import * as Api from "../Api.js"
import { AppConfig } from "../Config.js"
import { NotFound } from "../Domain/Errors.js"
import { pathOf } from "./Request.js"

const documentPath = "/openapi.json"
const pagePath = "/docs"
const scriptsPath = "/docs/:script"

/** The paths served here. */
export const paths = [documentPath, pagePath, scriptsPath]

/**
 * The page's policy: its own scripts only, nothing fetched from elsewhere. Scalar compiles a
 * WebAssembly module ('wasm-unsafe-eval' allows that, not JavaScript's eval) and writes its
 * stylesheet into the page at run time, which only 'unsafe-inline' for styles admits.
 */
const docsHeaders = {
  "content-security-policy": "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; " +
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer"
}

/**
 * Scalar's standalone build, as @effect/platform ships it for HttpApiScalar (pinned with it). It is
 * not a public export: should a version move it, /docs says so and the rest of the node runs on.
 */
const scalarSource = Effect.tryPromise(() => {
  const platform = Path.dirname(createRequire(import.meta.url).resolve("@effect/platform/package.json"))
  return import(pathToFileURL(Path.join(platform, "dist", "esm", "internal", "httpApiScalar.js")).href) as Promise<unknown>
}).pipe(
  Effect.map((module) =>
    typeof module === "object" && module !== null && "javascript" in module && typeof module.javascript === "string"
      ? Option.some(module.javascript)
      : Option.none()
  ),
  Effect.orElseSucceed(() => Option.none<string>()),
  Effect.tap((source) =>
    Option.isNone(source) ? Effect.logWarning("/docs is unavailable: @effect/platform no longer ships Scalar's script") : Effect.void
  )
)

const hashOf = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 16)

/** Each script with its gzip encoding, made once: Scalar's is 3.4 MB as text, about a third of that in gzip. */
const script = (body: string) => ({ body, gzip: Zlib.gzipSync(body, { level: 9 }), path: `/docs/${hashOf(body)}.js` })

/** Whether the client takes gzip (and has not refused it with q=0). */
const acceptsGzip = (acceptEncoding: string | undefined) =>
  (acceptEncoding ?? "").split(",").some((coding) => {
    const [name, ...parameters] = coding.trim().toLowerCase().split(";")
    return (name === "gzip" || name === "*") && !parameters.some((parameter) => /^\s*q=0(\.0*)?\s*$/.test(parameter))
  })

/** The page and its two scripts, by path. */
const makeDocs = (title: string, scalarScript: string) => {
  const scalar = script(scalarScript)
  const start = script(
    `Scalar.createApiReference("#reference", ${
      JSON.stringify({ url: documentPath, withDefaultFonts: false, hideClientButton: false, telemetry: false })
    })\n`
  )
  const page = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>${title} API</title>
    <link rel="icon" href="data:,">
  </head>
  <body>
    <div id="reference"></div>
    <script src="${scalar.path}"></script>
    <script src="${start.path}"></script>
  </body>
</html>
`
  return { page, scripts: new Map([scalar, start].map((entry) => [entry.path, entry])) }
}

const unavailable = new NotFound({ message: "The reference page is unavailable in this build; /openapi.json is served" })

export const routes = Effect.gen(function*() {
  const config = yield* AppConfig
  const spec = Api.openApi(config.maxBodyBytes)
  const document = JSON.stringify(spec)
  // Loaded when the page is first asked for: Scalar's script is 3.4 MB that most nodes never serve.
  const docs = yield* Effect.cached(Effect.map(scalarSource, Option.map((source) => makeDocs(spec.info.title, source))))
  const loaded = Effect.flatMap(docs, Option.match({ onNone: () => Effect.fail(unavailable), onSome: Effect.succeed }))

  return HttpRouter.empty.pipe(
    HttpRouter.get(documentPath, Effect.succeed(HttpServerResponse.text(document, { contentType: "application/json" }))),
    HttpRouter.get(
      pagePath,
      Effect.map(loaded, ({ page }) => HttpServerResponse.html(page).pipe(HttpServerResponse.setHeaders(docsHeaders)))
    ),
    HttpRouter.get(
      scriptsPath,
      Effect.flatMap(Effect.zip(loaded, HttpServerRequest.HttpServerRequest), ([{ scripts }, request]) => {
        const path = pathOf(request.url)
        const found = scripts.get(path)
        if (found === undefined) return Effect.fail(new NotFound({ message: `No script at ${path}` }))
        const contentType = "text/javascript; charset=utf-8"
        const headers = { "cache-control": "public, max-age=31536000, immutable", vary: "accept-encoding", ...docsHeaders }
        return Effect.succeed(
          acceptsGzip(request.headers["accept-encoding"])
            ? HttpServerResponse.uint8Array(found.gzip, { contentType, headers: { ...headers, "content-encoding": "gzip" } })
            : HttpServerResponse.text(found.body, { contentType, headers })
        )
      })
    )
  )
})
