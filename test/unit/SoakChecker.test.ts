import { describe, expect, it } from "@effect/vitest"
import { check, type Outcome } from "../../scripts/soak/checker.js"
import type * as History from "../../scripts/soak/history.js"

const id = (n: number) => `${n.toString(16).padStart(16, "0")}-${n.toString(16).padStart(16, "0")}`
const hash = (key: string) => key.length * 7919

/** A write of message `n` on channel `ch` at time `n * 100`, and, unless unstored, its row. */
const message = (n: number, ch = "a", outcome: Outcome = "acked") => ({
  write: {
    _tag: "write",
    src: "post",
    key: `p${n}`,
    ch,
    h: hash(`p${n}`),
    start: n * 100,
    end: n * 100 + 5,
    outcome,
    ...(outcome === "acked" ? { id: id(n) } : {})
  } satisfies History.Record,
  row: { _tag: "row", id: id(n), key: `p${n}`, ch, h: hash(`p${n}`) } satisfies History.Record
})

const delivery = (s: number, n: number, ch = "a"): typeof History.Delivery.Type => ({
  _tag: "msg",
  s,
  c: 1,
  id: id(n),
  key: `p${n}`,
  ch,
  h: hash(`p${n}`),
  at: n * 100 + 50
})

const subscriber = (s: number, channels: "all" | Array<string> = "all", from?: string): Array<History.Record> => [
  { _tag: "sub", s, channels, ...(from === undefined ? {} : { from }), at: 0 },
  { _tag: "open", s, c: 1, node: 0, ...(from === undefined ? {} : { last: from }), at: 1 }
]

/** Two subscribers following everything, messages 1..5 written and stored, deliveries as given. */
const history = (deliveries: Array<History.Record>, extra: Array<History.Record> = []): Array<History.Record> => {
  const messages = [1, 2, 3, 4, 5].map((n) => message(n))
  return [
    ...subscriber(1),
    ...subscriber(2),
    ...messages.map((m) => m.write),
    ...deliveries,
    ...extra,
    ...messages.map((m) => m.row),
    { _tag: "end", at: 1000 }
  ]
}

const everything = (s: number) => [1, 2, 3, 4, 5].map((n) => delivery(s, n))

describe("soak checker", () => {
  it("passes a history where every subscriber got every message once, in order", () => {
    const report = check(history([...everything(1), ...everything(2)]))
    expect(report).toMatchObject({ ok: true, lost: 0, duplicated: 0, outOfOrder: 0, unstored: 0, storageErrors: 0, deliveries: 10 })
    expect(report.delay.longest?.millis).toBe(50)
  })

  it("reports a message one subscriber never got as lost", () => {
    const report = check(history([...everything(1), ...everything(2).filter((_, i) => i !== 2)]))
    expect(report).toMatchObject({ ok: false, lost: 1, duplicated: 0, outOfOrder: 0, unstored: 0 })
    expect(report.samples.join("\n")).toContain(`subscriber 2 never got ${id(3)} (p3`)
  })

  it("reports a message delivered twice to one subscriber as duplicated", () => {
    const report = check(history([...everything(1), ...everything(2), delivery(2, 4)]))
    expect(report).toMatchObject({ ok: false, lost: 0, duplicated: 1, outOfOrder: 0, unstored: 0 })
  })

  it("reports a message delivered after a later one as out of order", () => {
    const swapped = [1, 2, 4, 3, 5].map((n) => delivery(2, n))
    const report = check(history([...everything(1), ...swapped]))
    expect(report).toMatchObject({ ok: false, lost: 0, duplicated: 0, outOfOrder: 1, unstored: 0 })
  })

  it("reports a delivered message that was never stored", () => {
    const ghost: History.Record = { ...delivery(1, 9), at: 480 }
    const report = check(history([...everything(1), ghost, ...everything(2)]))
    expect(report).toMatchObject({ ok: false, lost: 0, duplicated: 0, outOfOrder: 0, unstored: 1 })
    expect(report.samples.join("\n")).toContain("which is not stored")
  })

  it("reports a delivered message whose body differs from the stored one", () => {
    const altered: History.Record = { ...delivery(2, 5), h: 1 }
    const report = check(history([...everything(1), ...everything(2).slice(0, 4), altered]))
    expect(report).toMatchObject({ ok: false, unstored: 1 })
  })

  it("reports a message delivered to a subscriber that does not follow its channel", () => {
    const messages = [message(1, "a"), message(2, "b")]
    const report = check([
      ...subscriber(1, ["a"]),
      ...messages.map((m) => m.write),
      delivery(1, 1, "a"),
      delivery(1, 2, "b"),
      ...messages.map((m) => m.row)
    ])
    expect(report).toMatchObject({ ok: false, lost: 0, unstored: 1 })
  })

  it("reports an acknowledged write missing from the table, and a stored write that had failed", () => {
    const acked = message(6)
    const refused = message(7, "a", "refused")
    const report = check(history([...everything(1), ...everything(2)], [acked.write, refused.write, refused.row]))
    expect(report).toMatchObject({ ok: false, storageErrors: 2 })
    expect(report.samples.join("\n")).toMatch(/p6 .*acknowledged .* but is not stored/)
    expect(report.samples.join("\n")).toContain("p7 (post) is stored although its write refused")
  })

  it("lets a write of unknown outcome go undelivered when it is not stored, but not when it is", () => {
    const notStored = message(6, "a", "unknown")
    expect(check(history([...everything(1), ...everything(2)], [notStored.write]))).toMatchObject({ ok: true })
    const stored = message(6, "a", "unknown")
    const report = check(history([...everything(1), ...everything(2), delivery(1, 6)], [stored.write, stored.row]))
    expect(report).toMatchObject({ ok: false, lost: 1, writes: { unknownStored: 1 } })
  })

  it("owes a subscriber that began from an id exactly the messages after it, and one that began live those written after it connected", () => {
    const messages = [1, 2, 3].map((n) => message(n))
    const report = check([
      ...messages.map((m) => m.write),
      { _tag: "sub", s: 1, channels: "all", from: id(1), at: 0 },
      { _tag: "open", s: 1, c: 1, node: 0, last: id(1), at: 250 },
      { _tag: "sub", s: 2, channels: "all", at: 0 },
      { _tag: "open", s: 2, c: 1, node: 0, at: 250 },
      delivery(1, 2),
      delivery(1, 3),
      delivery(2, 3),
      ...messages.map((m) => m.row)
    ])
    expect(report).toMatchObject({ ok: true, lost: 0 })
  })

  it("excuses what a reset event skips, and counts it", () => {
    const report = check(history([
      ...everything(1),
      delivery(2, 1),
      { _tag: "reset", s: 2, c: 2, id: id(3), at: 350 },
      delivery(2, 4),
      delivery(2, 5)
    ]))
    expect(report).toMatchObject({ ok: true, lost: 0, resets: 1, skippedByReset: 2 })
  })

  it("names the faults that overlapped the longest delay", () => {
    const late: History.Record = { ...delivery(2, 5), at: 9000 }
    const report = check(history([...everything(1), ...everything(2).slice(0, 4), late], [
      { _tag: "fault", n: 3, kind: "node-freeze", target: "node 1", start: 600, end: 8000 },
      { _tag: "fault", n: 4, kind: "db-cut", target: "all nodes", start: 9500, end: 12_000 }
    ]))
    expect(report.ok).toBe(true)
    expect(report.delay.longest).toMatchObject({ millis: 8500, key: "p5", subscriber: 2 })
    expect(report.delay.longest?.overlapping).toEqual(["node-freeze#3 node 1 (0.6 s–8.0 s)"])
    expect(report.faults).toEqual([{ kind: "node-freeze", count: 1, millis: 7400 }, { kind: "db-cut", count: 1, millis: 2500 }])
  })

  it("does not count the wait of a subscriber that stopped reading as delivery delay", () => {
    const late: History.Record = { ...delivery(2, 5), at: 9000 }
    const report = check(history([...everything(1), ...everything(2).slice(0, 4), late], [
      { _tag: "fault", n: 1, kind: "reader-stop", target: "subscriber 2", s: 2, start: 450, end: 8900 }
    ]))
    expect(report.ok).toBe(true)
    expect(report.delay.longest?.millis).toBe(50)
  })
})
