import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect } from "effect"
import { settings } from "../../src/Config.js"

const read = (environment: Record<string, string>) =>
  Effect.withConfigProvider(settings, ConfigProvider.fromMap(new Map(Object.entries(environment))))

describe("Config", () => {
  it.effect("wakes on notifications by default, polls at least 10 ms apart, and can be told otherwise", () =>
    Effect.gen(function*() {
      const defaults = yield* read({})
      expect(defaults.notifyWakeup).toBe(true)
      expect(Duration.toMillis(defaults.wakeupMinGap)).toBe(10)
      const set = yield* read({ NOTIFY_WAKEUP: "false", WAKEUP_MIN_GAP: "0 millis" })
      expect(set.notifyWakeup).toBe(false)
      expect(Duration.toMillis(set.wakeupMinGap)).toBe(0)
    }))

  it.effect("refuses an invalid NOTIFY_WAKEUP or WAKEUP_MIN_GAP, naming it", () =>
    Effect.gen(function*() {
      const notify = yield* Effect.flip(read({ NOTIFY_WAKEUP: "sometimes" }))
      expect(String(notify)).toMatch(/NOTIFY_WAKEUP/)
      const gap = yield* Effect.flip(read({ WAKEUP_MIN_GAP: "soon" }))
      expect(String(gap)).toMatch(/WAKEUP_MIN_GAP/)
      const infinite = yield* Effect.flip(read({ WAKEUP_MIN_GAP: "Infinity" }))
      expect(String(infinite)).toMatch(/WAKEUP_MIN_GAP/)
    }))
  it.effect("refuses durations that would spin, overflow a timer or undo their setting, and negative ones, naming the bounds", () =>
    Effect.gen(function*() {
      const refused = {
        RETENTION_INTERVAL: "1 nanos",
        AUTH_CLOCK_TOLERANCE: "1000 days",
        WAKEUP_MIN_GAP: "-5 millis",
        POLL_INTERVAL: "0 millis",
        KEEP_ALIVE_TIMEOUT: "30 days",
        HEARTBEAT_INTERVAL: "100 days",
        MESSAGE_RETENTION: "1 nanos"
      }
      for (const [name, value] of Object.entries(refused)) {
        const error = String(yield* Effect.flip(read({ [name]: value })))
        expect(error, `${name}=${value}`).toMatch(new RegExp(`${name}.*must be a duration from`))
      }
      const accepted = yield* read({ RETENTION_INTERVAL: "100 millis", AUTH_CLOCK_TOLERANCE: "5 minutes", WAKEUP_MIN_GAP: "0 millis" })
      expect(Duration.toMillis(accepted.retentionInterval)).toBe(100)
      expect(Duration.toMillis(accepted.auth.clockTolerance)).toBe(300_000)
    }))
})
