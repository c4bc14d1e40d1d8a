/**
 * `NodeRuntime.runMain`'s contract — the first SIGINT or SIGTERM interrupts the main fiber, whose
 * scopes then close, and the process exits when they are closed — except that the handlers stay
 * installed until the process exits.
 *
 * runMain removes its handlers on the first signal, so a second one gets Node's default action and
 * kills the process in the middle of its shutdown, before the embedded PostgreSQL is stopped. A
 * terminal's Ctrl-C (and `kill -TERM -<pgid>`) reaches npm and the node alike, and npm forwards what
 * it got to the node: every `npm start` stopped that way sends the node two signals. The shutdown
 * under way is bounded by itself (SHUTDOWN_TIMEOUT, then PostgreSQL's fast and immediate stops), so
 * later signals do not cut it short; Lifecycle logs them.
 */
import { makeRunMain } from "@effect/platform/Runtime"

const signals = ["SIGINT", "SIGTERM"] as const

export const runMain = makeRunMain(({ fiber, teardown }) => {
  // Keeps the process alive while the main fiber runs, as runMain does.
  const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
  let stopping = false
  const onSignal = () => {
    if (stopping) return
    stopping = true
    fiber.unsafeInterruptAsFork(fiber.id())
  }
  for (const signal of signals) process.on(signal, onSignal)
  fiber.addObserver((exit) => {
    clearInterval(keepAlive)
    teardown(exit, (code) => {
      if (stopping || code !== 0) return process.exit(code)
      // Ended by itself: nothing holds the process, which exits once its event loop is empty.
      for (const signal of signals) process.off(signal, onSignal)
    })
  })
})
