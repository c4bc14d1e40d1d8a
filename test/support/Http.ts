/** A raw HTTP request to a node, answered as its status, headers and parsed JSON body. */
import { Effect, Schema } from "effect"
import { HistoryPage } from "../../src/Api.js"
import { Message } from "../../src/Domain/Message.js"

export interface Reply {
  readonly status: number
  readonly headers: Headers
  /** The JSON answered (undefined for an empty body): match it, or read it through a decoder below. */
  readonly json: unknown
}

export const request = (url: string, init?: RequestInit) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(url, init)
    const text = await response.text()
    return { status: response.status, headers: response.headers, json: text === "" ? undefined : JSON.parse(text) }
  })

/** What every refusal holds, whatever its route and status. */
const Refusal = Schema.Struct({ error: Schema.String, message: Schema.String, field: Schema.optional(Schema.String) })

// An answer's body read as the API declares it: a body of another shape fails the test that reads it.
type Answered = { readonly json: unknown }
/** A stored message, as `POST /messages` answers it. */
export const asMessage = (answer: Answered) => Schema.decodeUnknownSync(Message)(answer.json)
/** A page of history, as `GET /messages` answers it. */
export const asPage = (answer: Answered) => Schema.decodeUnknownSync(HistoryPage)(answer.json)
/** A refusal: `{ error, message, field? }`. */
export const asRefusal = (answer: Answered) => Schema.decodeUnknownSync(Refusal)(answer.json)
