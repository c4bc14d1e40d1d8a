import { describe, expect, it } from "@effect/vitest"
import { faultKinds, plan, type PlanOptions } from "../../scripts/soak/plan.js"

const full: PlanOptions = { seed: 42, durationMs: 600_000, nodes: 3, readers: 2, short: false, canRestartDatabase: true }
const short: PlanOptions = { ...full, durationMs: 60_000, short: true }

const count = (faults: ReturnType<typeof plan>, kind: string) => faults.filter((fault) => fault.kind === kind).length

describe("soak fault plan", () => {
  it("is the same for the same seed, and another for another seed", () => {
    expect(plan(full)).toEqual(plan(full))
    expect(plan({ ...full, seed: 43 })).not.toEqual(plan(full))
  })

  it("injects every kind at least twice in ten minutes, and once in a short run, inside the run", () => {
    for (const seed of [1, 2, 3, 42, 1234]) {
      const long = plan({ ...full, seed })
      const quick = plan({ ...short, seed })
      for (const kind of faultKinds) {
        expect(count(long, kind)).toBeGreaterThanOrEqual(2)
        expect(count(quick, kind)).toBe(1)
      }
      for (const [faults, length] of [[long, full.durationMs], [quick, short.durationMs]] as const) {
        for (const fault of faults) expect(fault.at + fault.duration).toBeLessThan(length)
        expect(faults.map((fault) => fault.at)).toEqual([...faults.map((fault) => fault.at)].sort((a, b) => a - b))
      }
    }
  })

  it("keeps durations and targets within the issue's ranges", () => {
    const faults = plan(full)
    for (const fault of faults) {
      if (fault.kind === "db-cut" || fault.kind === "db-stall") {
        expect(fault.duration).toBeGreaterThanOrEqual(5000)
        expect(fault.duration).toBeLessThanOrEqual(20_000)
      }
      if (fault.kind === "node-freeze") expect(fault.duration).toBe(10_000)
      if (typeof fault.node === "number") expect(fault.node).toBeLessThan(3)
      if (fault.subscriber !== undefined) expect(fault.subscriber).toBeLessThan(2)
    }
  })

  it("leaves out the database restart when the soak cannot restart the server", () => {
    expect(count(plan({ ...full, canRestartDatabase: false }), "db-restart")).toBe(0)
  })
})
