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
})
