/**
 * The errors the HTTP API answers with. Each renders itself (HttpServerRespondable) as a status code
 * and a JSON body `{ "error": tag, "message": text, "field"?: name }`, so a handler only fails.
 * The handlers beside the router write the same answers with `writeAnswer`.
 */
import { HttpServerRespondable, HttpServerResponse } from "@effect/platform"
import { Effect, ParseResult, Schema } from "effect"
import type * as NodeHttp from "node:http"

interface ErrorBody {
  readonly error: string
  readonly message: string
  readonly field?: string | undefined
}

const respond = (status: number, body: ErrorBody) => HttpServerResponse.unsafeJson(body, { status })

/** An answer as status, headers and JSON body, for the router and plain Node handlers alike. */
export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: ErrorBody | undefined
}

const toResponse = ({ body, headers, status }: Answer) =>
  body === undefined
    ? HttpServerResponse.empty({ status, headers })
    : HttpServerResponse.unsafeJson(body, { status, headers })

/** Writes `answer` to a plain Node response (one not handled by the router). */
export const writeAnswer = (response: NodeHttp.ServerResponse, { body, headers, status }: Answer) => {
  if (body === undefined) {
    response.writeHead(status, headers).end()
    return
  }
  const json = JSON.stringify(body)
  response.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(json) })
  response.end(json)
}

/** The request is malformed; `field` names the parameter or body field at fault. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String,
  field: Schema.optional(Schema.String)
}) {
  readonly status = 400

  /** The JSON body of the answer. */
  get body() {
    return { error: this._tag, message: this.message, field: this.field }
  }

  [HttpServerRespondable.symbol]() {
    return Effect.succeed(respond(this.status, this.body))
  }

  /** The first problem a schema found, named by the path of the field it concerns. */
  static fromParseError(error: ParseResult.ParseError, subject: string): InvalidRequest {
    const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
    const field = issue?.path[0] === undefined ? undefined : String(issue.path[0])
    if (issue === undefined || field === undefined) {
      return new InvalidRequest({ message: `${subject} is malformed: ${issue?.message ?? error.message}` })
    }
    const problem = issue._tag === "Unexpected" ? "is not a known field" : issue._tag === "Missing" ? "is required" : issue.message
    return new InvalidRequest({ field, message: `${field}: ${problem}` })
  }
}

export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  limit: Schema.Number
}) {
  override get message() {
    return `The request body is larger than ${this.limit} bytes`
  }
  [HttpServerRespondable.symbol]() {
    // The rest of the body is not read: close the connection rather than drain it.
    return Effect.succeed(
      respond(413, { error: this._tag, message: this.message }).pipe(HttpServerResponse.setHeader("connection", "close"))
    )
  }
}

export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()("ServiceUnavailable", {
  message: Schema.String,
  /** Seconds the client should wait before trying again (default 1). */
  retryAfter: Schema.optional(Schema.Number)
}) {
  get answer(): Answer {
    return {
      status: 503,
      headers: { "retry-after": String(this.retryAfter ?? 1) },
      body: { error: this._tag, message: this.message }
    }
  }
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(toResponse(this.answer))
  }
}

/**
 * No token where one is needed, or one that is refused (`invalidToken`): 401 with the challenge
 * of RFC 6750, which says which of the two it is.
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String,
  invalidToken: Schema.Boolean
}) {
  get answer(): Answer {
    const challenge = this.invalidToken
      ? `Bearer realm="pollcast", error="invalid_token", error_description="${this.message.replace(/["\\]/g, "")}"`
      : `Bearer realm="pollcast"`
    return { status: 401, headers: { "www-authenticate": challenge }, body: { error: this._tag, message: this.message } }
  }
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(toResponse(this.answer))
  }
}

/** A valid token (or none, for operations endpoints) that does not allow what was asked; `field` names the parameter. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  message: Schema.String,
  field: Schema.optional(Schema.String)
}) {
  get answer(): Answer {
    return { status: 403, headers: {}, body: { error: this._tag, message: this.message, field: this.field } }
  }
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(toResponse(this.answer))
  }
}

/** A browser request from a web page whose origin is neither the node's own nor in CORS_ORIGINS. */
export class OriginNotAllowed extends Schema.TaggedError<OriginNotAllowed>()("OriginNotAllowed", {
  origin: Schema.String
}) {
  override get message() {
    return `Requests from web pages at ${this.origin} are not allowed (CORS_ORIGINS)`
  }
  get answer(): Answer {
    return { status: 403, headers: {}, body: { error: this._tag, message: this.message, field: "Origin" } }
  }
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(toResponse(this.answer))
  }
}

export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()("UnsupportedMediaType", {
  contentType: Schema.optional(Schema.String)
}) {
  override get message() {
    return `The request body must be sent as content-type: application/json${
      this.contentType === undefined ? "" : `, not ${this.contentType.slice(0, 100)}`
    }`
  }
  get answer(): Answer {
    return { status: 415, headers: {}, body: { error: this._tag, message: this.message, field: "content-type" } }
  }
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(toResponse(this.answer))
  }
}

/** A limit was reached; `retryAfter` is in whole seconds. */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()("TooManyRequests", {
  message: Schema.String,
  retryAfter: Schema.Number
}) {
  get answer(): Answer {
    return {
      status: 429,
      headers: { "retry-after": String(this.retryAfter) },
      body: { error: this._tag, message: this.message }
    }
  }
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(toResponse(this.answer))
  }
}

export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  message: Schema.String
}) {
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(respond(404, { error: this._tag, message: this.message }))
  }
}

/** The JSON body of an unexpected failure; the details go to the log, not to the client. */
export const internalError = respond(500, { error: "InternalError", message: "Something went wrong on our side" })
