/**
 * Which web pages may call the node, decided from a request's parts:
 *
 * - Hosts: a browser's request must name the node by an IP address, localhost, this machine's name
 *   or a name in ALLOWED_HOSTS. Otherwise a page at a name its owner re-points at this node (DNS
 *   rebinding) is same-origin with it and passes the origin rules. Requests from programs (no
 *   Origin, no Sec-Fetch-Mode: curl, probes, other services) are not held to it.
 * - Origins: a browser may call the API's cross-origin routes from the node's own origin or one
 *   listed in CORS_ORIGINS; anything else is refused, which with `content-type: application/json`
 *   required of POST closes cross-site request forgery (a form or `text/plain` fetch sends no
 *   preflight).
 */
import * as Net from "node:net"
import * as Os from "node:os"
import { Forbidden, OriginNotAllowed } from "../Domain/Errors.js"
import type { RequestParts } from "./Request.js"

export type Screening =
  /** Go on, adding these headers to the answer. */
  | { readonly _tag: "Pass"; readonly headers: Readonly<Record<string, string>> }
  /** A preflight, answered 204 with these headers. */
  | { readonly _tag: "Preflight"; readonly headers: Readonly<Record<string, string>> }
  | { readonly _tag: "Refused"; readonly error: Forbidden | OriginNotAllowed }

export interface OriginSettings {
  readonly corsOrigins: ReadonlyArray<string>
  readonly allowedHosts: ReadonlyArray<string>
  readonly trustProxy: number
}

// Nothing to add to a same-origin answer: a header set here would also make Node keep a copy of
// all the answer's headers for as long as an event stream lasts (about 0.5 KB).
const pass: Screening = { _tag: "Pass", headers: {} }

/**
 * The screening of a request; `methods` are the methods its route declares if it is one of the
 * API's cross-origin routes (none for the page, its assets and the operations endpoints).
 */
export const make = ({ allowedHosts, corsOrigins, trustProxy }: OriginSettings) => {
  const anyOrigin = corsOrigins.includes("*")
  const allowedOrigins = new Set(corsOrigins)
  const anyHost = allowedHosts.includes("*")
  const exactHosts = new Set([...allowedHosts.map((name) => name.toLowerCase()), "localhost", Os.hostname().toLowerCase()])
  const hostSuffixes = [".localhost", ...allowedHosts.filter((name) => name.startsWith("*.")).map((name) => name.slice(1).toLowerCase())]

  const isAllowedHost = (host: string) => {
    let name: string
    try {
      name = new URL(`http://${host}`).hostname.toLowerCase()
    } catch {
      return false
    }
    const bare = name.startsWith("[") ? name.slice(1, -1) : name
    return Net.isIP(bare) !== 0 || exactHosts.has(bare) || hostSuffixes.some((suffix) => bare.endsWith(suffix))
  }

  const isOwnOrigin = (request: RequestParts, origin: string) => {
    // Browsers say it themselves (Sec-Fetch-Site, which pages cannot set); older ones are
    // judged by the Origin's host against the host they sent the request to.
    if (request.fetchSite !== undefined) return request.fetchSite === "same-origin" || request.fetchSite === "none"
    let host: string
    try {
      host = new URL(origin).host
    } catch {
      return false
    }
    return host === request.host || (trustProxy > 0 && host === request.forwardedHost)
  }

  const corsHeaders = (origin: string) => ({
    vary: "Origin",
    "access-control-allow-origin": origin,
    "access-control-allow-credentials": "true",
    "access-control-expose-headers": "retry-after, www-authenticate"
  })

  const hostRefusal = (request: RequestParts): Screening | undefined => {
    if (anyHost || (request.origin === undefined && request.fetchMode === undefined)) return undefined
    const host = (trustProxy > 0 ? request.forwardedHost : undefined) ?? request.host ?? ""
    if (isAllowedHost(host)) return undefined
    return {
      _tag: "Refused",
      error: new Forbidden({
        field: "Host",
        message: `This node is not served as ${JSON.stringify(host.slice(0, 200))} to browsers; add the name to ALLOWED_HOSTS`
      })
    }
  }

  return (request: RequestParts, methods: ReadonlyArray<string> | undefined): Screening => {
    const refused = hostRefusal(request)
    if (refused !== undefined) return refused
    if (methods === undefined) return pass
    const origin = request.origin
    const preflight = request.method === "OPTIONS"
    if (origin !== undefined && (anyOrigin || allowedOrigins.has(origin))) {
      const headers = corsHeaders(origin)
      if (!preflight) return { _tag: "Pass", headers }
      return {
        _tag: "Preflight",
        headers: {
          ...headers,
          "access-control-allow-methods": methods.join(", "),
          "access-control-allow-headers": "authorization, content-type, last-event-id",
          "access-control-max-age": "600"
        }
      }
    }
    if (origin !== undefined && !isOwnOrigin(request, origin)) return { _tag: "Refused", error: OriginNotAllowed.of(origin) }
    return preflight ? { _tag: "Preflight", headers: { allow: [...methods, "OPTIONS"].join(", ") } } : pass
  }
}
