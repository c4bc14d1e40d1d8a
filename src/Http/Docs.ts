/**
 * The API's description: `GET /openapi.json` (OpenAPI 3.1, derived from src/Api.ts) and a reference
 * page at `GET /docs`, rendered by Scalar — the very build that @effect/platform's HttpApiScalar
 * inlines into its page, served here as a file of its own from node_modules, so that the page runs
 * under a Content-Security-Policy without inline scripts and loads nothing from elsewhere.
 */
import { HttpRouter, HttpServerRequest, HttpServerResponse, OpenApi } from "@effect/platform"
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import * as Zlib from "node:zlib"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import * as Api from "../Api.js"
import { AppConfig } from "../Config.js"
import { NotFound } from "./HttpErrors.js"

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

const decodeErrorRef = "#/components/schemas/HttpApiDecodeError"
const decodeErrorSchemas = new Set(["HttpApiDecodeError", "Issue", "PropertyKey"])
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

/**
 * The document as the routes answer: a malformed request gets InvalidRequest, never the
 * HttpApiDecodeError that HttpApi declares for every endpoint, so that alternative is left out.
 */
const asServed = (spec: OpenApi.OpenAPISpec): string =>
  JSON.stringify(spec, (key, value: unknown) => {
    if (!isRecord(value)) return value
    if (key === "schemas") return Object.fromEntries(Object.entries(value).filter(([name]) => !decodeErrorSchemas.has(name)))
    // An endpoint whose only 400 is the decode error answers no 400 at all.
    if (key === "400" && JSON.stringify(value).includes(decodeErrorRef) && !JSON.stringify(value).includes("InvalidRequest")) {
      return undefined
    }
    if (value.description === "The request did not match the expected schema") {
      return { ...value, description: "The request is malformed; `field` names what is wrong" }
    }
    if (!Array.isArray(value.anyOf)) return value
    const rest: Array<unknown> = value.anyOf.filter((schema) => !(isRecord(schema) && schema.$ref === decodeErrorRef))
    if (rest.length === value.anyOf.length) return value
    return rest.length === 1 ? rest[0] : { ...value, anyOf: rest }
  })

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
      JSON.stringify({ url: "/openapi.json", withDefaultFonts: false, hideClientButton: false, telemetry: false })
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
  const spec = OpenApi.fromApi(Api.make(config.maxBodyBytes))
  const document = asServed(spec)
  // Loaded when the page is first asked for: Scalar's script is 3.4 MB that most nodes never serve.
  const docs = yield* Effect.cached(Effect.map(scalarSource, Option.map((source) => makeDocs(spec.info.title, source))))
  const loaded = Effect.flatMap(docs, Option.match({ onNone: () => Effect.fail(unavailable), onSome: Effect.succeed }))

  return HttpRouter.empty.pipe(
    HttpRouter.get("/openapi.json", Effect.succeed(HttpServerResponse.text(document, { contentType: "application/json" }))),
    HttpRouter.get(
      "/docs",
      Effect.map(loaded, ({ page }) => HttpServerResponse.html(page).pipe(HttpServerResponse.setHeaders(docsHeaders)))
    ),
    HttpRouter.get(
      "/docs/:script",
      Effect.flatMap(Effect.zip(loaded, HttpServerRequest.HttpServerRequest), ([{ scripts }, request]) => {
        const found = scripts.get(new URL(request.url, "http://pollcast").pathname)
        if (found === undefined) return Effect.fail(new NotFound({ message: `No script at ${request.url.split("?")[0]}` }))
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
