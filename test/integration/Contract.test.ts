/**
 * The routes against their declaration (src/Api.ts): every route served is declared and every
 * declared endpoint is served; each declared answer that a request here can provoke comes with
 * its declared status and a body its declared schema accepts; and the document served at
 * /openapi.json is valid OpenAPI 3.1.
 */
import { HttpApi, HttpApiSchema } from "@effect/platform"
import { Validator } from "@seriousme/openapi-schema-validator"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Either, JSONSchema, Layer, Option, Schema, SchemaAST as AST } from "effect"
import * as Http from "node:http"
import * as Api from "../../src/Api.js"
import * as HttpModule from "../../src/Http.js"
import * as Admission from "../../src/Access/Admission.js"
import * as NodeStatus from "../../src/Cluster/NodeStatus.js"
import * as RequestPolicy from "../../src/Access/RequestPolicy.js"
import { testConfig } from "../support/TestConfig.js"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"
import * as Tokens from "../support/Tokens.js"

interface Declared {
  readonly method: string
  readonly path: string
  readonly name: string
  /** Status → the body's schema and content type (none: no body). */
  readonly answers: ReadonlyMap<number, Option.Option<{ readonly schema: Schema.Schema<unknown, unknown>; readonly encoding: HttpApiSchema.Encoding }>>
}

const declared: Array<Declared> = []
HttpApi.reflect(Api.make(16_384), {
  onGroup: () => undefined,
  onEndpoint: ({ endpoint, errors, group, successes }) => {
    const answers = new Map<number, Option.Option<{ schema: Schema.Schema<unknown, unknown>; encoding: HttpApiSchema.Encoding }>>()
    for (const [status, { ast }] of [...successes, ...errors]) {
      answers.set(status, Option.map(ast, (ast) => ({ schema: Schema.make<unknown, unknown, never>(ast), encoding: HttpApiSchema.getEncoding(ast) })))
    }
    declared.push({ method: endpoint.method, path: endpoint.path, name: `${group.identifier}.${endpoint.name}`, answers })
  }
})

/** A parameter as declared: where the request carries it, and the schema of it alone. */
interface Parameter {
  readonly endpoint: string
  readonly method: string
  readonly path: string
  readonly location: "query" | "header" | "body"
  readonly name: string
  readonly schema: Schema.Schema<unknown, unknown>
}

const parameters: Array<Parameter> = []
HttpApi.reflect(Api.make(16_384), {
  onGroup: () => undefined,
  onEndpoint: ({ endpoint, group }) => {
    const locations = [
      ["query", endpoint.urlParamsSchema],
      ["header", endpoint.headersSchema],
      ["body", endpoint.payloadSchema]
    ] as const
    for (const [location, declaredSchema] of locations) {
      if (Option.isNone(declaredSchema)) continue
      const ast = AST.encodedAST(declaredSchema.value.ast)
      const struct = Schema.make<unknown, unknown, never>(declaredSchema.value.ast)
      expect(ast._tag, `${endpoint.path} ${location}`).toBe("TypeLiteral")
      if (ast._tag !== "TypeLiteral") continue
      for (const property of ast.propertySignatures) {
        const name = String(property.name)
        parameters.push({
          endpoint: `${group.identifier}.${endpoint.name}`,
          method: endpoint.method,
          path: endpoint.path,
          location,
          name,
          schema: Schema.make<unknown, unknown, never>(AST.pick(struct.ast, [name]))
        })
      }
    }
  }
})

/** Served, but described elsewhere or not at all on purpose: the page and the description itself. */
const undeclared = new Set(["GET /", "GET /assets/:name", "GET /docs", "GET /docs/:script", "GET /openapi.json"])

interface Answer {
  readonly status: number
  readonly contentType: string
  readonly text: string
}

/** A request with node:http, whose body may be declared longer than what is sent (it is never ended then). */
const send = (
  url: string,
  options: { readonly method?: string; readonly headers?: Record<string, string>; readonly body?: string } = {}
) =>
  Effect.async<Answer, Error>((resume) => {
    const request = Http.request(url, { method: options.method ?? "GET", headers: options.headers }, (response) => {
      let text = ""
      const contentType = response.headers["content-type"] ?? ""
      // An event stream never ends: its head is the answer.
      if (contentType.startsWith("text/event-stream")) {
        resume(Effect.succeed({ status: response.statusCode ?? 0, contentType, text }))
        request.destroy()
        return
      }
      response.on("data", (chunk) => (text += chunk))
      response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, contentType, text })))
    })
    request.on("error", (error) => resume(Effect.fail(error)))
    if (options.body !== undefined) request.write(options.body)
    const declaredLength = Number(options.headers?.["content-length"] ?? Number.NaN)
    if (!(declaredLength > (options.body?.length ?? 0))) request.end()
  })

const json = { "content-type": "application/json" }
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const token = (rights: Tokens.Rights, sub = "ada") => Effect.promise(() => Tokens.hs256(rights, { sub }))

/** "name status" of every declared answer a test here has provoked. */
const exercised = new Set<string>()

/** Declared answers no request here provokes, and where they are shown instead. */
const elsewhere = new Set([
  // The database unreachable: Outage.test.ts. A key set that cannot be fetched: Access.test.ts.
  "messages.publish 503",
  "messages.history 503",
  "operations.readyz 503",
  // A database replaced under the node: Recreated.test.ts. The database unreachable: Outage.test.ts.
  "operations.healthz 503",
  "messages.position 503",
  "operations.metrics 503",
  "operations.stats 503"
])

/** Checks that `answer` is one `name` declares for its status, with a body its schema accepts. */
const conforms = (name: string, answer: Answer) => {
  const endpoint = declared.find((candidate) => candidate.name === name)!
  const schema = endpoint.answers.get(answer.status)
  expect(schema, `${name} answered ${answer.status}, which it does not declare: ${answer.text}`).toBeDefined()
  exercised.add(`${name} ${answer.status}`)
  if (Option.isNone(schema!)) return
  const { encoding } = schema!.value
  expect(answer.contentType.startsWith(encoding.contentType), `${name} ${answer.status}: ${answer.contentType}`).toBe(true)
  const body = encoding.kind === "Json" ? JSON.parse(answer.text) : answer.text
  const decoded = Schema.decodeUnknownEither(schema!.value.schema)(body)
  expect(decoded._tag, `${name} ${answer.status}: ${answer.text}`).toBe("Right")
}

/** The status of a GET of `url`, once its answer is checked against `name`'s declaration. */
const statusAsDeclared = (name: string, url: string, headers: Record<string, string> = {}) =>
  Effect.map(send(url, { headers }), (answer) => {
    conforms(name, answer)
    return answer.status
  })

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("the API's declaration", (it) => {
  it.scoped("declares every route the router serves, and every declared endpoint is served", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start()
      const served = yield* HttpModule.servedRoutes.pipe(
        Effect.provide(node.context),
        Effect.provide(Layer.merge(RequestPolicy.layer.pipe(Layer.provide(Admission.layer)), NodeStatus.local).pipe(
          Layer.provide(Layer.succeedContext(node.context)),
          Layer.provideMerge(testConfig())
        ))
      )
      const described = declared.map((endpoint) => `${endpoint.method} ${endpoint.path}`)
      expect(served.filter((route) => !undeclared.has(route)).sort()).toEqual(described.sort())
      // GET /events has a handler of its own beside the router.
      expect((yield* send(node.url("/events"))).contentType).toBe("text/event-stream")
    }))

  describe("answers as declared", () => {
    it.scoped("POST /messages", () =>
      Effect.gen(function*() {
        const open = yield* TestNode.start({ MAX_BODY_BYTES: "10" })
        const publish = (init: Parameters<typeof send>[1]) => Effect.map(send(open.url("/messages"), { method: "POST", ...init }), (answer) => {
          conforms("messages.publish", answer)
          return answer.status
        })
        expect(yield* publish({ headers: json, body: JSON.stringify({ body: "fine" }) })).toBe(201)
        expect(yield* publish({ headers: json, body: JSON.stringify({ body: "x", channel: "no spaces" }) })).toBe(400)
        expect(yield* publish({ headers: { "content-type": "text/plain" }, body: "{}" })).toBe(415)
        expect(yield* publish({ headers: { ...json, "content-length": "100000" }, body: "{" })).toBe(413)
        expect(yield* publish({ headers: { ...json, origin: "https://elsewhere.example" }, body: "{}" })).toBe(403)

        const guarded = yield* TestNode.start({ AUTH_SECRET: Tokens.secret, PUBLISH_RATE: "1", PUBLISH_BURST: "1" })
        const publishGuarded = (headers: Record<string, string>) =>
          Effect.map(send(guarded.url("/messages"), { method: "POST", headers: { ...json, ...headers }, body: JSON.stringify({ channel: "c", body: "b" }) }), (answer) => {
            conforms("messages.publish", answer)
            return answer.status
          })
        expect(yield* publishGuarded({})).toBe(401)
        expect(yield* publishGuarded(bearer(yield* token({ publish: ["other"] })))).toBe(403)
        // Another subject: the refusal above took a place in ada's rate.
        const publisher = bearer(yield* token({ publish: ["c"] }, "bea"))
        expect(yield* publishGuarded(publisher)).toBe(201)
        expect(yield* publishGuarded(publisher)).toBe(429)
      }))

    it.scoped("GET /messages", () =>
      Effect.gen(function*() {
        const open = yield* TestNode.start()
        const history = (query: string, headers: Record<string, string> = {}, node = open) =>
          statusAsDeclared("messages.history", node.url(`/messages${query}`), headers)
        expect(yield* history("?channel=a&limit=5")).toBe(200)
        expect(yield* history("?limit=0")).toBe(400)
        expect(yield* history("", { origin: "https://elsewhere.example" })).toBe(403)
        const guarded = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        expect(yield* history("?channel=a", {}, guarded)).toBe(401)
        expect(yield* history("?channel=a", bearer(yield* token({ subscribe: ["b"] })), guarded)).toBe(403)
      }))

    it.scoped("GET /events", () =>
      Effect.gen(function*() {
        const open = yield* TestNode.start({ MAX_STREAMS_PER_CLIENT: "1" })
        const events = (query: string, headers: Record<string, string> = {}, node = open) =>
          statusAsDeclared("events.events", node.url(`/events${query}`), headers)
        expect(yield* events("?channel=a")).toBe(200)
        expect(yield* events("", { "last-event-id": "41" })).toBe(400)
        expect(yield* events("", { origin: "https://elsewhere.example" })).toBe(403)
        const held = yield* TestNode.start({ MAX_STREAMS_PER_CLIENT: "1" })
        const first = yield* Effect.acquireRelease(
          Effect.sync(() => Http.get(held.url("/events"))),
          (request) => Effect.sync(() => request.destroy())
        )
        yield* Effect.async<void>((resume) => {
          first.once("response", () => resume(Effect.void))
        })
        expect(yield* events("", {}, held)).toBe(429)
        const full = yield* TestNode.start({ MAX_STREAMS: "1" })
        const only = yield* Effect.acquireRelease(Effect.sync(() => Http.get(full.url("/events"))), (request) => Effect.sync(() => request.destroy()))
        yield* Effect.async<void>((resume) => {
          only.once("response", () => resume(Effect.void))
        })
        expect(yield* events("", {}, full)).toBe(503)
        const guarded = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        expect(yield* events("?channel=a", {}, guarded)).toBe(401)
        expect(yield* events("?channel=a", bearer(yield* token({ subscribe: ["b"] })), guarded)).toBe(403)
      }))

    it.scoped("GET /position", () =>
      Effect.gen(function*() {
        const open = yield* TestNode.start()
        const position = (query: string, headers: Record<string, string> = {}, node = open) =>
          statusAsDeclared("messages.position", node.url(`/position${query}`), headers)
        expect(yield* position("?channel=a")).toBe(200)
        expect(yield* position("?channel=no%20spaces")).toBe(400)
        expect(yield* position("", { origin: "https://elsewhere.example" })).toBe(403)
        const guarded = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        expect(yield* position("?channel=a", {}, guarded)).toBe(401)
        expect(yield* position("?channel=a", bearer(yield* token({ subscribe: ["b"] })), guarded)).toBe(403)
        expect(yield* position("?channel=b", bearer(yield* token({ subscribe: ["b"] })), guarded)).toBe(200)
      }))

    it.scoped("the operations endpoints, and an unknown route", () =>
      Effect.gen(function*() {
        const open = yield* TestNode.start()
        const guarded = yield* TestNode.start({ AUTH_SECRET: Tokens.secret })
        const member = bearer(yield* token({ subscribe: ["*"] }))
        const admin = bearer(yield* token({ admin: true }))
        expect(yield* statusAsDeclared("operations.healthz", open.url("/healthz"))).toBe(200)
        expect(yield* statusAsDeclared("operations.readyz", open.url("/readyz"))).toBe(200)
        for (const name of ["metrics", "stats"]) {
          expect(yield* statusAsDeclared(`operations.${name}`, open.url(`/${name}`))).toBe(200)
          expect(yield* statusAsDeclared(`operations.${name}`, guarded.url(`/${name}`))).toBe(401)
          expect(yield* statusAsDeclared(`operations.${name}`, guarded.url(`/${name}`), member)).toBe(403)
          expect(yield* statusAsDeclared(`operations.${name}`, guarded.url(`/${name}`), admin)).toBe(200)
        }
        expect(yield* statusAsDeclared("operations.healthz", open.url("/nowhere"))).toBe(404)
      }))
  })

  it("has provoked every declared answer but the few shown elsewhere (run after the tests above)", () => {
    const answers = declared.flatMap((endpoint) =>
      [...endpoint.answers.keys()].map((status) => `${endpoint.name} ${status}`)
    ).filter((answer) =>
      // The API-wide 404 once; and not the 400 that HttpApi declares for its own decoding, which the
      // routes never answer (and the document leaves out) where they declare no InvalidRequest.
      (!answer.endsWith(" 404") || answer === "operations.healthz 404") &&
      !(answer.startsWith("operations.") && answer.endsWith(" 400"))
    )
    expect(answers.filter((answer) => !exercised.has(answer)).sort()).toEqual([...elsewhere].sort())
  })

  it.scoped("serves /openapi.json as valid OpenAPI 3.1, describing /events and its event format", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start()
      const answer = yield* send(node.url("/openapi.json"))
      expect(answer.status).toBe(200)
      const document = JSON.parse(answer.text) as {
        readonly paths: Record<string, Record<string, { readonly parameters?: ReadonlyArray<{ readonly name: string; readonly in: string }>; readonly responses: Record<string, { readonly content?: Record<string, unknown> }> }>>
      }
      const validator = new Validator()
      const result = yield* Effect.promise(() => validator.validate(document))
      expect(result.errors ?? []).toEqual([])
      expect(result.valid).toBe(true)
      expect(validator.version).toBe("3.1")
      const events = document.paths["/events"]!["get"]!
      expect(events.parameters?.map((parameter) => `${parameter.in} ${parameter.name}`)).toEqual(
        expect.arrayContaining(["header last-event-id", "query channel", "query lastEventId"])
      )
      expect(Object.keys(events.responses["200"]!.content ?? {})).toEqual(["text/event-stream"])
      expect(answer.text).toContain("event: reset")
      expect(answer.text).not.toContain("HttpApiDecodeError")
    }))

  describe("takes its requests as declared", () => {
    /**
     * Values a parameter's schema may refuse: its JSON schema's bounds passed by one first, then
     * values no parameter is likely to take. The schema says which it refuses.
     */
    const candidates = (parameter: Parameter): ReadonlyArray<string | ReadonlyArray<string>> => {
      const json = JSONSchema.make(parameter.schema) as { readonly properties?: Record<string, Record<string, unknown>> }
      const bounds = json.properties?.[parameter.name] ?? {}
      const alternatives = [bounds, ...(Array.isArray(bounds["anyOf"]) ? bounds["anyOf"] : [])] as ReadonlyArray<Record<string, unknown>>
      const fromBounds = alternatives.flatMap((schema) => [
        ...(typeof schema["maximum"] === "number" ? [String(schema["maximum"] + 1)] : []),
        ...(typeof schema["minimum"] === "number" ? [String(schema["minimum"] - 1)] : []),
        ...(typeof schema["maxItems"] === "number" ? [Array.from({ length: schema["maxItems"] + 1 }, (_, index) => `c${index}`)] : [])
      ])
      return [...fromBounds, "", "x!", "1.5", "zz@1", "a".repeat(70)]
    }

    const refuses = (parameter: Parameter, value: string | ReadonlyArray<string>) =>
      Either.isLeft(Schema.decodeUnknownEither(parameter.schema)({ [parameter.name]: value }))

    const request = (node: TestNode.TestNode, parameter: Parameter, value: string | ReadonlyArray<string> | undefined) => {
      const url = new URL(node.url(parameter.path))
      const headers: Record<string, string> = {}
      let body: string | undefined
      if (parameter.method === "POST") {
        headers["content-type"] = "application/json"
        body = JSON.stringify(value === undefined ? { body: "b" } : { body: "b", [parameter.name]: value })
      }
      if (value !== undefined && parameter.location === "query") {
        for (const item of typeof value === "string" ? [value] : value) url.searchParams.append(parameter.name, item)
      }
      if (value !== undefined && parameter.location === "header") headers[parameter.name] = String(value)
      return send(url.href, { method: parameter.method, headers, ...(body === undefined ? {} : { body }) })
    }

    it.scoped("refuses a value outside each declared parameter's bounds with the declared 400", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const unbounded: Array<string> = []
        for (const parameter of parameters) {
          const refused = candidates(parameter).filter((value) => refuses(parameter, value))
          if (refused.length === 0) {
            unbounded.push(`${parameter.endpoint} ${parameter.name}`)
            continue
          }
          for (const value of refused) {
            const answer = yield* request(node, parameter, value)
            const what = `${parameter.endpoint} ${parameter.location} ${parameter.name}=${JSON.stringify(value).slice(0, 40)}`
            expect(answer.status, `${what}: ${answer.text}`).toBe(400)
            conforms(parameter.endpoint, answer)
            const error = JSON.parse(answer.text) as { readonly error: string; readonly field?: string }
            expect(error.error, what).toBe("InvalidRequest")
            expect(error.field?.toLowerCase(), what).toBe(parameter.name.toLowerCase())
          }
        }
        // Only the free-form one: a token.
        expect(unbounded.sort()).toEqual([
          "events.events access_token",
          "messages.history access_token",
          "messages.position access_token"
        ])
      }))

    it.scoped("takes a missing parameter as its declared default", () =>
      Effect.gen(function*() {
        const node = yield* TestNode.start()
        const defaults = parameters.flatMap((parameter) => {
          const decoded = Schema.decodeUnknownEither(parameter.schema)({})
          if (Either.isLeft(decoded) || !(parameter.name in (decoded.right as object))) return []
          const encoded = Schema.encodeSync(parameter.schema)(decoded.right) as Record<string, string | ReadonlyArray<string>>
          return [{ parameter, value: encoded[parameter.name]!, typed: (decoded.right as Record<string, unknown>)[parameter.name] }]
        })
        expect(defaults.map(({ parameter }) => `${parameter.endpoint} ${parameter.name}`).sort()).toEqual([
          "events.events channel",
          "messages.history channel",
          "messages.history limit",
          "messages.position channel",
          "messages.publish author",
          "messages.publish channel"
        ])
        // More messages than any default page holds, so that a page size shows.
        for (let index = 0; index < Api.defaultPageSize + 1; index++) {
          yield* send(node.url("/messages"), { method: "POST", headers: json, body: JSON.stringify({ body: `m${index}` }) })
        }
        for (const { parameter, typed, value } of defaults) {
          if (parameter.method !== "GET" || parameter.location !== "query" || parameter.path === "/events" || parameter.path === "/position") continue
          const absent = yield* request(node, parameter, undefined)
          const given = yield* request(node, parameter, value)
          expect(absent.status, parameter.name).toBe(200)
          expect(absent.text, `${parameter.endpoint} ${parameter.name}`).toBe(given.text)
          if (typeof typed === "number") {
            const other = yield* request(node, parameter, String(typed - 1))
            expect(other.text, `${parameter.endpoint} ${parameter.name}`).not.toBe(absent.text)
          }
        }
        // A message published with neither channel nor author is stored with their defaults.
        const published = yield* send(node.url("/messages"), { method: "POST", headers: json, body: JSON.stringify({ body: "defaults" }) })
        const stored = JSON.parse(published.text) as Record<string, unknown>
        for (const { parameter, typed } of defaults.filter(({ parameter }) => parameter.location === "body")) {
          expect(stored[parameter.name], parameter.name).toBe(typed)
        }
      }))
  })
})
