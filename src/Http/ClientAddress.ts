/**
 * Where a request comes from: the peer of its socket, or, behind `trustedProxies` proxies
 * (TRUST_PROXY), the address the outermost of them saw. Each proxy appends the address it received
 * the request from to `X-Forwarded-For` (or `Forwarded: for=`), so that list is read from its right
 * end, one entry per trusted proxy: entries further left were written by the client and could say
 * anything.
 */
import ipaddr from "ipaddr.js"
import * as Net from "node:net"

export type Headers = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

const headerText = (value: string | ReadonlyArray<string> | undefined) =>
  value === undefined ? undefined : typeof value === "string" ? value : value.join(",")

/** `for=` of each element of a `Forwarded` header (RFC 7239), without quotes, brackets or port. */
const forwardedFor = (header: string): Array<string> =>
  header.split(",").map((element) => {
    const pair = element.split(";").map((part) => part.trim()).find((part) => part.toLowerCase().startsWith("for="))
    let value = pair === undefined ? "" : pair.slice(4).trim().replace(/^"(.*)"$/, "$1")
    if (value.startsWith("[")) value = value.slice(1, value.indexOf("]"))
    else if (Net.isIPv4(value.split(":")[0] ?? "") && value.includes(":")) value = value.slice(0, value.indexOf(":"))
    return value
  })

/** The addresses the proxies recorded, nearest proxy first. */
const forwardedChain = (headers: Headers): Array<string> => {
  // Most proxies set X-Forwarded-For; Forwarded is read only without it (see the README).
  const xForwardedFor = headerText(headers["x-forwarded-for"])
  if (xForwardedFor !== undefined) return xForwardedFor.split(",").map((entry) => entry.trim()).reverse()
  const forwarded = headerText(headers["forwarded"])
  return forwarded === undefined ? [] : forwardedFor(forwarded).reverse()
}

// A dotted IPv4 address is kept as it is: the same string as the socket's, not a copy per request.
/** An address in canonical form: an IPv4-mapped IPv6 address as the IPv4 one. */
export const canonical = (address: string) => (Net.isIPv4(address) ? address : ipaddr.process(address).toString())

/** The client's address, in canonical form (an IPv4-mapped IPv6 address as IPv4). */
export const clientAddress = (headers: Headers, socketAddress: string, trustedProxies: number): string => {
  let address = Net.isIP(socketAddress) === 0 ? socketAddress : canonical(socketAddress)
  if (trustedProxies === 0) return address
  const chain = forwardedChain(headers)
  for (let hop = 0; hop < trustedProxies && hop < chain.length; hop++) {
    const entry = chain[hop]!
    // A proxy that wrote something else ("unknown", an obfuscated name) ends what can be known.
    if (Net.isIP(entry) === 0) break
    address = canonical(entry)
  }
  return address
}

/** The host the proxies say the client asked for (X-Forwarded-Host, or Forwarded: host=). */
export const forwardedHost = (headers: Headers): string | undefined => {
  const xForwardedHost = headerText(headers["x-forwarded-host"])
  if (xForwardedHost !== undefined) return xForwardedHost.split(",").pop()?.trim()
  const forwarded = headerText(headers["forwarded"])
  const host = forwarded?.split(",").pop()?.split(";").map((part) => part.trim()).find((part) =>
    part.toLowerCase().startsWith("host=")
  )
  return host?.slice(5).replace(/^"(.*)"$/, "$1")
}
