/**
 * A request's parts as the access rules and the request log read them (src/Access/Request.ts),
 * parsed once per request from its method, URL, headers and peer address, for the router and the
 * /events handler alike.
 */
import type { HttpServerRequest } from "@effect/platform"
import { Effect } from "effect"
import type { RequestParts } from "../Access/Request.js"
import { AppConfig } from "../Config.js"
import { clientAddress, forwardedHost, type Headers } from "./ClientAddress.js"

const first = (value: string | ReadonlyArray<string> | undefined) => (typeof value === "string" ? value : value?.[0])

/** The query of a URL as the platform parses it: a name once, a string; repeated, an array. */
export const queryOf = (url: string): Readonly<Record<string, string | Array<string>>> => {
  const start = url.indexOf("?")
  const query: Record<string, string | Array<string>> = {}
  if (start === -1) return query
  for (const [name, value] of new URLSearchParams(url.slice(start + 1))) {
    const seen = query[name]
    query[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value]
  }
  return query
}

/** The path of a URL, without its query. */
export const pathOf = (url: string) => {
  const query = url.indexOf("?")
  return query === -1 ? url : url.slice(0, query)
}

/** Whether a URL carries a token in its query (such URLs are kept out of traces and logs). */
export const hasTokenInQuery = (url: string) => url.includes("access_token=")

/** Parses requests with the node's TRUST_PROXY. */
export const parser = Effect.map(AppConfig, ({ trustProxy }) =>
  (method: string, url: string, headers: Headers, remoteAddress: string | undefined): RequestParts => ({
    method,
    path: pathOf(url),
    address: clientAddress(headers, remoteAddress ?? "", trustProxy),
    origin: first(headers["origin"]),
    host: first(headers["host"]),
    forwardedHost: trustProxy > 0 ? forwardedHost(headers) : undefined,
    fetchSite: first(headers["sec-fetch-site"]),
    fetchMode: first(headers["sec-fetch-mode"]),
    contentType: first(headers["content-type"]),
    authorization: first(headers["authorization"]),
    cookie: first(headers["cookie"]),
    accessToken: hasTokenInQuery(url) ? first(queryOf(url)["access_token"]) : undefined
  }))

/**
 * Each request's parts, parsed as it arrives (src/Http.ts), for the router's handlers to read by
 * the request they were given: the platform's request keeps the server's own as its `source`.
 */
const parsed = new WeakMap<object, RequestParts>()

export const remember = (source: object, parts: RequestParts) => {
  parsed.set(source, parts)
}

/** The parts of a request the router handles. */
export const partsOf = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<RequestParts> => {
  const parts = typeof request.source === "object" && request.source !== null ? parsed.get(request.source) : undefined
  return parts === undefined ? Effect.dieMessage("A request reached the router without being parsed") : Effect.succeed(parts)
}
