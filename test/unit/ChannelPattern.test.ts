import { describe, expect, it } from "@effect/vitest"
import { channelPatternSyntax, Patterns } from "../../src/Domain/ChannelPattern.js"

describe("channel patterns", () => {
  it("match a channel by name, by a prefix ending in *, or every channel with *", () => {
    const patterns = Patterns.of(["news", "team.*", "ops:*"])
    expect(["news", "team.red", "team.red.eu", "ops:db"].filter((channel) => patterns.allows(channel))).toHaveLength(4)
    expect(["new", "newsroom", "team", "teams", "xteam.red", "ops"].filter((channel) => patterns.allows(channel))).toEqual([])
    expect(patterns.everything).toBe(false)
    expect(Patterns.of(["*"]).allows("anything")).toBe(true)
    expect(Patterns.of(["x", "*"]).everything).toBe(true)
    expect(Patterns.of([]).allows("news")).toBe(false)
    expect(Patterns.of([]).isEmpty).toBe(true)
  })

  it("combine, as a token's rights add to the anonymous ones", () => {
    const union = Patterns.of(["a"]).union(Patterns.of(["b.*"]))
    expect(["a", "b.1"].every((channel) => union.allows(channel))).toBe(true)
    expect(union.allows("c")).toBe(false)
    expect(Patterns.of(["a"]).union(Patterns.all).everything).toBe(true)
    expect(Patterns.none.union(Patterns.none).isEmpty).toBe(true)
  })

  it("are channel names with at most one trailing *", () => {
    for (const valid of ["*", "a", "team.*", "a*", "A-z_0.9:*", "x".repeat(64), `${"x".repeat(63)}*`]) {
      expect(channelPatternSyntax.test(valid), valid).toBe(true)
    }
    for (const invalid of ["", "**", "*.team", "te*am", "a b", "a,b", "x".repeat(65), `${"x".repeat(64)}*`, "a\n"]) {
      expect(channelPatternSyntax.test(invalid), invalid).toBe(false)
    }
  })
})
