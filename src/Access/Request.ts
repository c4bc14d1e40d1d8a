/**
 * What the access rules read of a request, parsed once from it by the HTTP layer (src/Http/Request.ts)
 * for the router and the /events handler alike: plain values, no server objects.
 */
export interface RequestParts {
  readonly method: string
  /** The path without its query. */
  readonly path: string
  /** The client's address in canonical form, through TRUST_PROXY proxies. */
  readonly address: string
  readonly origin: string | undefined
  readonly host: string | undefined
  /** The host the trusted proxies say the client asked for (none unless TRUST_PROXY). */
  readonly forwardedHost: string | undefined
  /** Sec-Fetch-Site and Sec-Fetch-Mode: a browser's own account of the request. */
  readonly fetchSite: string | undefined
  readonly fetchMode: string | undefined
  readonly contentType: string | undefined
  /** Where a token may be (see Credentials.ts): read only once access control asks. */
  readonly authorization: string | undefined
  readonly cookie: string | undefined
  /** The `access_token` query parameter. */
  readonly accessToken: string | undefined
}
