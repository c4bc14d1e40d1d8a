import { describe, expect, it } from "@effect/vitest"
import { limitKey } from "../../src/Access/Admission.js"
import { clientAddress, forwardedHost } from "../../src/Http/ClientAddress.js"

const peer = (headers: Record<string, string>, remoteAddress = "10.0.0.5") => [headers, remoteAddress] as const

describe("client address", () => {
  it("is the socket's peer unless proxies are trusted", () => {
    expect(clientAddress(...peer({ "x-forwarded-for": "198.51.100.1" }), 0)).toBe("10.0.0.5")
    expect(clientAddress(...peer({}, "::ffff:192.0.2.7"), 0)).toBe("192.0.2.7")
  })

  it("reads X-Forwarded-For from the right, one entry per trusted proxy", () => {
    const headers = { "x-forwarded-for": "203.0.113.66, 198.51.100.1, 10.1.1.1" }
    expect(clientAddress(...peer(headers), 1)).toBe("10.1.1.1")
    expect(clientAddress(...peer(headers), 2)).toBe("198.51.100.1")
    expect(clientAddress(...peer(headers), 3)).toBe("203.0.113.66")
    // Fewer entries than proxies: the leftmost is as far as anything is known.
    expect(clientAddress(...peer(headers), 5)).toBe("203.0.113.66")
    expect(clientAddress(...peer({ "x-forwarded-for": "garbage, 198.51.100.1" }), 2)).toBe("198.51.100.1")
    expect(clientAddress(...peer({ "x-forwarded-for": "::ffff:198.51.100.9" }), 1)).toBe("198.51.100.9")
  })

  it("reads Forwarded (RFC 7239) when there is no X-Forwarded-For", () => {
    const forwarded = "for=192.0.2.43:8080;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1"
    expect(clientAddress(...peer({ forwarded }), 1)).toBe("2001:db8:cafe::17")
    expect(clientAddress(...peer({ forwarded }), 2)).toBe("192.0.2.43")
    expect(clientAddress(...peer({ forwarded: "for=unknown" }), 1)).toBe("10.0.0.5")
    expect(clientAddress(...peer({ forwarded, "x-forwarded-for": "198.51.100.1" }), 1)).toBe("198.51.100.1")
  })

  it("counts an IPv6 client by its /64 network and an IPv4 one by its address", () => {
    expect(limitKey("2001:db8:1:2::17")).toBe(limitKey("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    expect(limitKey("2001:db8:1:2::17")).not.toBe(limitKey("2001:db8:1:3::17"))
    expect(limitKey("192.0.2.1")).toBe("192.0.2.1")
  })

  it("takes the host the client asked for from X-Forwarded-Host or Forwarded", () => {
    expect(forwardedHost(peer({ "x-forwarded-host": "chat.example.com" })[0])).toBe("chat.example.com")
    expect(forwardedHost(peer({ forwarded: "for=192.0.2.1;host=\"chat.example.com:8443\";proto=https" })[0])).toBe("chat.example.com:8443")
    expect(forwardedHost(peer({})[0])).toBeUndefined()
  })
})
