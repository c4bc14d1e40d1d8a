/**
 * Server-Sent Events framing (https://html.spec.whatwg.org/multipage/server-sent-events.html).
 *
 * Stricter than `@effect/experimental/Sse`'s encoder, which splits data on "\n" only and writes
 * any id: data is split on every line-break form ("\r\n", "\r", "\n"), and a line break in `id`
 * or `event` (or a NUL in `id`, which clients ignore) is refused, because it would let the value
 * inject fields of its own.
 */
import { Data } from "effect"

export interface Event {
  readonly id?: string | undefined
  readonly event?: string | undefined
  readonly data: string
}

/** Thrown (a defect: the values framed are the service's own) for a field that would break the frame. */
export class SseFieldError extends Data.TaggedError("SseFieldError")<{
  readonly field: "id" | "event"
  readonly value: string
}> {
  override get message() {
    return `SSE ${this.field} must not contain a line break${this.field === "id" ? " or NUL" : ""}: ${
      JSON.stringify(this.value)
    }`
  }
}

const lineBreak = /\r\n|\r|\n/
const forbiddenInId = /[\r\n\u0000]/
const forbiddenInEvent = /[\r\n]/

/** One event, terminated by the blank line that makes the client dispatch it. */
export const event = ({ data, event, id }: Event): string => {
  let frame = ""
  if (id !== undefined) {
    if (forbiddenInId.test(id)) throw new SseFieldError({ field: "id", value: id })
    frame += `id: ${id}\n`
  }
  if (event !== undefined) {
    if (forbiddenInEvent.test(event)) throw new SseFieldError({ field: "event", value: event })
    frame += `event: ${event}\n`
  }
  for (const line of data.split(lineBreak)) {
    frame += `data: ${line}\n`
  }
  return frame + "\n"
}

/** Tells the client how long to wait before reconnecting. */
export const retry = (milliseconds: number): string => `retry: ${Math.max(0, Math.round(milliseconds))}\n\n`

/** A comment: ignored by clients, it keeps idle connections (and proxies) from timing out. */
export const comment = (text: string): string =>
  text.split(lineBreak).map((line) => `: ${line}\n`).join("") + "\n"

// --- pollcast's frames ---

const encoder = new TextEncoder()

/** A message's frame: its SSE id, `event: message`, and the message as JSON in `data`. */
export const messageFrame = (id: string, data: string): Uint8Array => encoder.encode(event({ id, event: "message", data }))

const decoder = new TextDecoder()
const dataField = "\ndata: "

/** The data of a frame made by messageFrame (one line: JSON has no line breaks). */
export const messageData = (frame: Uint8Array): string => {
  const text = decoder.decode(frame)
  return text.slice(text.indexOf(dataField) + dataField.length, text.length - 2)
}

/** Why a resuming client is sent a `reset` event. */
export type ResetReason = "ahead" | "expired"

/**
 * The `reset` event: the client's id could not be resumed from, and the stream goes on after
 * `position` (also the event's id, so that an EventSource reconnects from there).
 */
export const resetFrame = (reason: ResetReason, position: string): Uint8Array =>
  encoder.encode(event({ id: position, event: "reset", data: JSON.stringify({ reason, lastEventId: position }) }))

export const heartbeatFrame = encoder.encode(comment("heartbeat"))

/** The last frame of a stream whose access token expired. */
export const tokenExpiredFrame = encoder.encode(comment("The access token expired: reconnect with a fresh one"))

export const retryFrame = (milliseconds: number): Uint8Array => encoder.encode(retry(milliseconds))
