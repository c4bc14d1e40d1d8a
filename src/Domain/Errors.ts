/**
 * The failures a client is told about. Each is one Schema.TaggedError, whatever produced it (the
 * request's decoding, the access rules, the repo); src/Api.ts declares each with its status and
 * its JSON body `{ "error": tag, "message": text, "field"?: name }`, and one function renders them
 * for the router and the /events handler alike (src/Http/Answer.ts).
 */
import { ParseResult, Schema } from "effect"

/** The text of a cause that may or may not be an Error. */
export const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** A problem a schema reported, as ParseResult.ArrayFormatter and HttpApiDecodeError list them. */
interface Issue {
  readonly _tag: string
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

/** The request is malformed; `field` names the parameter, header or body field at fault. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String,
  field: Schema.optional(Schema.String)
}) {
  /**
   * The problem a schema found, named by the path of the field it concerns: the first that says
   * more than a type mismatch (which a union reports for each member the value is not), if any.
   */
  static fromIssues(issues: ReadonlyArray<Issue>, subject: string, fallback: string): InvalidRequest {
    const issue = issues.find((candidate) => candidate._tag !== "Type") ?? issues[0]
    const field = issue?.path[0] === undefined ? undefined : String(issue.path[0])
    if (issue === undefined || field === undefined) {
      return new InvalidRequest({ message: `${subject} is malformed: ${issue?.message ?? fallback}` })
    }
    const problem = issue._tag === "Unexpected" ? "is not a known field" : issue._tag === "Missing" ? "is required" : issue.message
    return new InvalidRequest({ field, message: `${field}: ${problem}` })
  }

  static fromParseError(error: ParseResult.ParseError, subject: string): InvalidRequest {
    return InvalidRequest.fromIssues(ParseResult.ArrayFormatter.formatErrorSync(error), subject, error.message)
  }
}

/**
 * No token where one is needed, or one that is refused (`invalidToken`): the answer's challenge
 * (RFC 6750) says which of the two it is.
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String,
  invalidToken: Schema.optionalWith(Schema.Boolean, { default: () => false })
}) {}

/** A token (or none, for operations endpoints) that does not allow what was asked; `field` names what. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  message: Schema.String,
  field: Schema.optional(Schema.String)
}) {}

/** A browser request from a web page whose origin is neither the node's own nor in CORS_ORIGINS. */
export class OriginNotAllowed extends Schema.TaggedError<OriginNotAllowed>()("OriginNotAllowed", {
  message: Schema.String,
  field: Schema.optional(Schema.String)
}) {
  static of(origin: string): OriginNotAllowed {
    return new OriginNotAllowed({
      field: "Origin",
      message: `Requests from web pages at ${origin.slice(0, 200)} are not allowed (CORS_ORIGINS)`
    })
  }
}

export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  message: Schema.String
}) {}

/** The body passed `limit` bytes; the rest of it is not read, and the connection is closed after the answer. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  message: Schema.String
}) {
  static of(limit: number): PayloadTooLarge {
    return new PayloadTooLarge({ message: `The request body is larger than ${limit} bytes` })
  }
}

export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()("UnsupportedMediaType", {
  message: Schema.String,
  field: Schema.optional(Schema.String)
}) {
  static of(contentType: string | undefined): UnsupportedMediaType {
    return new UnsupportedMediaType({
      field: "content-type",
      message: `The request body must be sent as content-type: application/json${
        contentType === undefined ? "" : `, not ${contentType.slice(0, 100)}`
      }`
    })
  }
}

/** A limit was reached; `retryAfter` is in whole seconds. */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()("TooManyRequests", {
  message: Schema.String,
  retryAfter: Schema.optionalWith(Schema.Number, { default: () => 1 })
}) {}

/** The database or the identity provider's key set is unavailable, or the node is full; `retryAfter` in seconds. */
export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()("ServiceUnavailable", {
  message: Schema.String,
  retryAfter: Schema.optionalWith(Schema.Number, { default: () => 1 })
}) {}

/** Every failure a request can be answered with. */
export type HttpError =
  | InvalidRequest
  | Unauthorized
  | Forbidden
  | OriginNotAllowed
  | NotFound
  | PayloadTooLarge
  | UnsupportedMediaType
  | TooManyRequests
  | ServiceUnavailable

/** Whether a failure is one of the above. */
export const isHttpError = Schema.is(
  Schema.Union(
    InvalidRequest,
    Unauthorized,
    Forbidden,
    OriginNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    ServiceUnavailable
  )
)
