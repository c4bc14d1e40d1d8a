import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { beginning, MessageId, messageId, messageIdParts, NewMessage } from "../../src/Domain/Message.js"

describe("Message ids", () => {
  it("sort as strings in (transaction, sequence) order", () => {
    const ids = [
      messageId(5n, 100n),
      messageId(4n, 200n),
      messageId(0x1_0000_0000n, 1n),
      messageId(5n, 99n),
      messageId(4n, 1000n)
    ]
    expect([...ids].sort()).toEqual([
      messageId(4n, 200n),
      messageId(4n, 1000n),
      messageId(5n, 99n),
      messageId(5n, 100n),
      messageId(0x1_0000_0000n, 1n)
    ])
    expect(beginning < messageId(0n, 1n)).toBe(true)
  })

  it("give back their parts as decimal strings for SQL, up to 64-bit values", () => {
    expect(messageIdParts(messageId("18446744073709551615", "9223372036854775807"))).toEqual({
      txid: "18446744073709551615",
      seq: "9223372036854775807"
    })
    expect(messageId(755n, 1n)).toBe("00000000000002f3-0000000000000001")
  })

  it("reject anything not in the canonical form", () => {
    const decode = Schema.decodeUnknownEither(MessageId)
    expect(Either.isRight(decode("00000000000002f3-0000000000000001"))).toBe(true)
    for (const bad of ["41", "00000000000002F3-0000000000000001", "2f3-1", " 00000000000002f3-0000000000000001", 41]) {
      expect(Either.isLeft(decode(bad)), String(bad)).toBe(true)
    }
  })
})

describe("NewMessage", () => {
  const decode = Schema.decodeUnknownEither(NewMessage(8), { onExcessProperty: "error" })

  it("fills in channel and author", () => {
    expect(decode({ body: "hi" })).toEqual(Either.right({ channel: "general", author: "anonymous", body: "hi" }))
  })

  it("counts the body's limit in UTF-8 bytes and the author's in characters", () => {
    expect(Either.isRight(decode({ body: "éééé" }))).toBe(true)
    expect(Either.isLeft(decode({ body: "ééééé" }))).toBe(true)
    expect(Either.isRight(decode({ body: "x", author: "🚀".repeat(64) }))).toBe(true)
    expect(Either.isLeft(decode({ body: "x", author: "🚀".repeat(65) }))).toBe(true)
  })
})
