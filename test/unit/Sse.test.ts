import { describe, expect, it } from "@effect/vitest"
import * as Sse from "../../src/Delivery/Sse.js"
import { parser } from "../support/SseFrames.js"

describe("Sse framing", () => {
  it("frames an event as id, event and data lines ending in a blank line", () => {
    expect(Sse.event({ id: "7", event: "message", data: "{\"a\":1}" })).toBe(
      "id: 7\nevent: message\ndata: {\"a\":1}\n\n"
    )
    expect(Sse.event({ data: "plain" })).toBe("data: plain\n\n")
  })

  it("splits data on every line-break form so no line can start a field of its own", () => {
    expect(Sse.event({ data: "a\nb\r\nc\rd" })).toBe("data: a\ndata: b\ndata: c\ndata: d\n\n")
    expect(Sse.event({ data: "x\nid: 666\n\nevent: evil" })).toBe(
      "data: x\ndata: id: 666\ndata: \ndata: event: evil\n\n"
    )
    expect(Sse.event({ data: "" })).toBe("data: \n\n")
    expect(Sse.event({ data: "trailing\n" })).toBe("data: trailing\ndata: \n\n")
  })

  it("round-trips through a spec-conformant parser, line breaks normalised to \\n", () => {
    const parsed = parser()
    parsed.feed(new TextEncoder().encode(Sse.event({ id: "1", event: "message", data: " lead\r\nx\ry\n" })))
    expect(parsed.events).toEqual([{ _tag: "Event", id: "1", event: "message", data: " lead\nx\ny\n" }])
  })

  it("refuses a line break in id or event, and a NUL in id", () => {
    for (const id of ["a\nb", "a\rb", "a\r\nb", "a\u0000b"]) {
      expect(() => Sse.event({ id, data: "x" })).toThrow(/SSE id must not contain/)
    }
    for (const event of ["a\nb", "a\rb"]) {
      expect(() => Sse.event({ event, data: "x" })).toThrow(/SSE event must not contain/)
    }
  })

  it("frames retry and comments, one comment line per line of text", () => {
    expect(Sse.retry(2000)).toBe("retry: 2000\n\n")
    expect(Sse.retry(12.6)).toBe("retry: 13\n\n")
    expect(Sse.comment("heartbeat")).toBe(": heartbeat\n\n")
    expect(Sse.comment("a\r\nb")).toBe(": a\n: b\n\n")
  })
})
