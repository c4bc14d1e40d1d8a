import { describe, expect, it } from "@effect/vitest"
import { RateLimiter, StreamCounts } from "../../src/Access/Limits.js"

describe("RateLimiter", () => {
  it("allows a burst, then one message per interval, and says how long to wait", () => {
    const limiter = new RateLimiter(2, 3, 100)
    expect([0, 0, 0].map(() => limiter.take("ada", 0))).toEqual([0, 0, 0])
    expect(limiter.take("ada", 0)).toBe(500)
    expect(limiter.take("ada", 200)).toBe(300)
    expect(limiter.take("ada", 500)).toBe(0)
    expect(limiter.take("ada", 500)).toBe(500)
    // Another identity has its own bucket.
    expect(limiter.take("bob", 500)).toBe(0)
    // Full again after burst / rate seconds: the whole burst is available.
    expect([0, 0, 0].map(() => limiter.take("ada", 2500))).toEqual([0, 0, 0])
  })

  it("forgets an identity once its bucket is full again, so idle publishers cost nothing", () => {
    const limiter = new RateLimiter(10, 5, 1_000_000)
    for (let i = 0; i < 10_000; i++) limiter.take(`address ${i}`, i / 100)
    expect(limiter.size).toBeGreaterThan(9000)
    limiter.take("late", 1000)
    expect(limiter.size).toBe(1)
  })

  it("tracks at most maxTracked identities however many arrive at once", () => {
    const limiter = new RateLimiter(1, 1, 1000)
    for (let i = 0; i < 50_000; i++) expect(limiter.take(`attacker ${i}`, 0)).toBe(0)
    expect(limiter.size).toBe(1000)
    // The most recent ones are still limited.
    expect(limiter.take("attacker 49999", 0)).toBeGreaterThan(0)
  })
})

describe("StreamCounts", () => {
  it("caps streams per client and on the node, and frees a client's entry with its last stream", () => {
    const counts = new StreamCounts(2, 3)
    expect([counts.add("a"), counts.add("a"), counts.add("a")]).toEqual([undefined, undefined, "client"])
    expect(counts.add("b")).toBeUndefined()
    expect(counts.add("c")).toBe("node")
    expect([counts.streams, counts.clients]).toEqual([3, 2])
    counts.remove("a")
    expect(counts.add("c")).toBeUndefined()
    for (const client of ["a", "b", "c"]) counts.remove(client)
    expect([counts.streams, counts.clients]).toEqual([0, 0])
    // Removing what is not there changes nothing.
    counts.remove("a")
    expect(counts.streams).toBe(0)
  })

  it("has no cap at 0", () => {
    const counts = new StreamCounts(0, 0)
    for (let i = 0; i < 1000; i++) expect(counts.add("one")).toBeUndefined()
    expect([counts.streams, counts.clients]).toEqual([1000, 1])
  })
})
