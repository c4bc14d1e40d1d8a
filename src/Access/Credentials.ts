/**
 * The token a request carries: `Authorization: Bearer`, else the `pollcast_token` cookie, else the
 * `access_token` query parameter (the last resort of clients that can set neither).
 */
import { Cookies } from "@effect/platform"
import type { RequestParts } from "./Request.js"

export type Credentials =
  | { readonly _tag: "None" }
  | { readonly _tag: "Token"; readonly token: string }
  | { readonly _tag: "Malformed" }

export const tokenCookie = "pollcast_token"

const none: Credentials = { _tag: "None" }
const malformed: Credentials = { _tag: "Malformed" }
const bearer = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i

/** The credentials of a request, from its Authorization and Cookie headers and its `access_token`. */
export const credentialsOf = ({ accessToken, authorization, cookie }: RequestParts): Credentials => {
  if (authorization !== undefined && /^bearer\b/i.test(authorization)) {
    const match = bearer.exec(authorization)
    return match === null ? malformed : { _tag: "Token", token: match[1]! }
  }
  if (cookie !== undefined) {
    const token = Cookies.parseHeader(cookie)[tokenCookie]
    if (token !== undefined && token !== "") return { _tag: "Token", token }
  }
  return accessToken === undefined || accessToken === "" ? none : { _tag: "Token", token: accessToken }
}
