/**
 * How a failure is answered, in one place for the router and the /events handler: the status and
 * JSON body its declaration gives it (src/Api.ts), and the headers some carry (Retry-After, the
 * Bearer challenge, closing the connection after a body that was not read).
 */
import { HttpServerResponse } from "@effect/platform"
import type * as NodeHttp from "node:http"
import { encodeError, statusOf } from "../Api.js"
import type { HttpError } from "../Domain/Errors.js"

/** An answer as status, headers and JSON body, for the router and plain Node handlers alike. */
export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: unknown
}


const headersOf = (error: HttpError): Readonly<Record<string, string>> => {
  switch (error._tag) {
    case "ServiceUnavailable":
    case "TooManyRequests":
      return { "retry-after": String(error.retryAfter) }
    case "Unauthorized":
      return {
        "www-authenticate": error.invalidToken
          ? `Bearer realm="pollcast", error="invalid_token", error_description="${error.message.replace(/["\\]/g, "")}"`
          : `Bearer realm="pollcast"`
      }
    case "PayloadTooLarge":
      // The rest of the body is not read: close the connection rather than drain it.
      return { connection: "close" }
    default:
      return {}
  }
}

export const answerOf = (error: HttpError): Answer => ({
  status: statusOf(error),
  headers: headersOf(error),
  body: encodeError(error)
})

export const toResponse = ({ body, headers, status }: Answer) =>
  body === undefined
    ? HttpServerResponse.empty({ status, headers })
    : HttpServerResponse.unsafeJson(body, { status, headers })

/** Writes `answer` to a plain Node response (one not handled by the router). */
export const write = (response: NodeHttp.ServerResponse, { body, headers, status }: Answer) => {
  if (body === undefined) {
    response.writeHead(status, headers).end()
    return
  }
  const json = JSON.stringify(body)
  response.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(json) })
  response.end(json)
}

/** The JSON body of an unexpected failure; the details go to the log, not to the client. */
export const internalError: Answer = {
  status: 500,
  headers: {},
  body: { error: "InternalError", message: "Something went wrong on our side" }
}
