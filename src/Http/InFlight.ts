/**
 * What a graceful shutdown waits for, of one kind: the requests in flight, or the event streams
 * whose connections the `/events` handler has taken over from the HTTP server (Takeover.ts). Each
 * is entered when it begins and left when it ends; `settled` completes whenever none is left, and
 * what is left when shutdown stops waiting can still be reached (to cut it).
 */
import { Effect } from "effect"

export class InFlight<A> {
  private readonly open = new Set<A>()
  private readonly waiting = new Set<() => void>()

  enter(item: A) {
    this.open.add(item)
  }

  leave(item: A) {
    if (this.open.delete(item) && this.open.size === 0) for (const wake of this.waiting) wake()
  }

  /** What is in flight now. */
  values() {
    return [...this.open]
  }

  /** Completes whenever nothing is in flight (at once if nothing is). */
  readonly settled = Effect.async<void>((resume) => {
    if (this.open.size === 0) return resume(Effect.void)
    const wake = () => {
      this.waiting.delete(wake)
      resume(Effect.void)
    }
    this.waiting.add(wake)
    return Effect.sync(() => this.waiting.delete(wake))
  })
}
