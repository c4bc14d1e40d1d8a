/**
 * The errors the HTTP API answers with. Each renders itself (HttpServerRespondable) as a status code
 * and a JSON body `{ "error": tag, "message": text, "field"?: name }`, so a handler only fails.
 */
import { HttpServerRespondable, HttpServerResponse } from "@effect/platform"
import { Effect, ParseResult, Schema } from "effect"

const respond = (status: number, body: { readonly error: string; readonly message: string; readonly field?: string | undefined }) =>
  HttpServerResponse.unsafeJson(body, { status })

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
  message: Schema.String
}) {
  [HttpServerRespondable.symbol]() {
    return Effect.succeed(
      respond(503, { error: this._tag, message: this.message }).pipe(HttpServerResponse.setHeader("retry-after", "1"))
    )
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
