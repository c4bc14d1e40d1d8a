/**
 * Wakeups held in memory, for unit tests of the poller: the test sends notifications by hand (or
 * loses them, by not sending them) and sets the state the service reports.
 */
import { Effect, Layer, Stream } from "effect"
import { type WakeupState, Wakeups } from "../../src/Delivery/Wakeups.js"

export interface InMemoryWakeups {
  readonly layer: Layer.Layer<Wakeups>
  /** A notification, as PostgreSQL would send one when an insert commits. */
  readonly notify: () => void
  readonly setState: (state: WakeupState) => void
}

export const make = (): InMemoryWakeups => {
  const subscribers = new Set<() => void>()
  let state: WakeupState = "listening"
  let notifications = 0

  const ticks = Stream.async<void>((emit) => {
    const tick = () => void emit.single(undefined)
    subscribers.add(tick)
    return Effect.sync(() => subscribers.delete(tick))
  })

  return {
    layer: Layer.succeed(
      Wakeups,
      Wakeups.of({ ticks, status: Effect.sync(() => ({ state, notifications, outages: 0 })) })
    ),
    notify: () => {
      notifications++
      for (const tick of subscribers) tick()
    },
    setState: (value) => {
      state = value
    }
  }
}
