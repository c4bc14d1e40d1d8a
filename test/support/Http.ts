/** A raw HTTP request to a node, answered as its status, headers and parsed JSON body. */
import { Effect } from "effect"

export interface Reply {
  readonly status: number
  readonly headers: Headers
  // Whatever JSON the node answered: tests look into it field by field.
  readonly json: any
}

export const request = (url: string, init?: RequestInit) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(url, init)
    const text = await response.text()
    return { status: response.status, headers: response.headers, json: text === "" ? undefined : JSON.parse(text) }
  })
