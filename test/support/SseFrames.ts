/** Reads SSE bytes back into events with @effect/experimental's spec-conformant parser. */
import * as Sse from "@effect/experimental/Sse"
import { Duration } from "effect"

export interface Parsed {
  readonly events: Array<Sse.Event>
  readonly retries: Array<number>
  readonly feed: (bytes: Uint8Array) => void
  readonly ids: () => Array<string>
}

export const parser = (): Parsed => {
  const events: Array<Sse.Event> = []
  const retries: Array<number> = []
  const decoder = new TextDecoder()
  const parse = Sse.makeParser((event) => {
    if (event._tag === "Event") events.push(event)
    else retries.push(Duration.toMillis(event.duration))
  })
  return {
    events,
    retries,
    feed: (bytes) => {
      parse.feed(decoder.decode(bytes, { stream: true }))
    },
    ids: () => events.map((event) => event.id ?? "")
  }
}
