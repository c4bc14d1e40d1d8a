/** A Broadcast sink for unit tests: keeps what it is given, and reads it or (a stalled client) not. */
import type { Sink } from "../../src/Delivery/Broadcast.js"
import { parser } from "./SseFrames.js"

export interface TestSink extends Sink {
  readonly chunks: Array<Uint8Array>
  readonly parsed: ReturnType<typeof parser>
  readonly wasCutOff: () => boolean
  readonly hasEnded: () => boolean
}

export const make = (options: { readonly reads?: boolean } = {}): TestSink => {
  const chunks: Array<Uint8Array> = []
  const parsed = parser()
  let unread = 0
  let taken = 0
  let cut = false
  let ended = false
  return {
    chunks,
    parsed,
    write: (frames) => {
      chunks.push(frames)
      parsed.feed(frames)
      if (options.reads === false) unread += frames.length
      else taken += frames.length
    },
    backlog: () => unread,
    flushed: () => taken,
    cutOff: () => {
      cut = true
    },
    end: () => {
      ended = true
    },
    wasCutOff: () => cut,
    hasEnded: () => ended
  }
}
