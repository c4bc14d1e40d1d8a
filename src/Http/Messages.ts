/**
 * The `messages` endpoints, served from their declaration (src/Api.ts): `POST /messages` stores a
 * message, `GET /messages` pages through the stored ones in delivery order, `GET /position` says
 * where the database is now.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Schedule, Schema } from "effect"
import { Readable } from "node:stream"
import * as Api from "../Api.js"
import { InvalidRequest, messageOf, PayloadTooLarge, ServiceUnavailable } from "../Domain/Errors.js"
import { beginning, encodeMessage, NewMessage } from "../Domain/Message.js"
import { RequestPolicy } from "../Access/RequestPolicy.js"
import { AppConfig } from "../Config.js"
import { type DatabaseError, MessageRepo } from "../Storage/MessageRepo.js"
import * as Request from "./Request.js"

/**
 * The body as text, or PayloadTooLarge as soon as it passes `limit` bytes. The platform's reader
 * destroys the socket when a body outgrows its limit, which leaves no way to answer 413; this one
 * reads the request's own stream, stops, and leaves the connection to carry the answer (it is
 * closed after it).
 */
const readText = (incoming: Readable, limit: number) =>
  Effect.async<string, PayloadTooLarge | InvalidRequest>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const stop = () => {
      incoming.off("data", onData).off("end", onEnd).off("error", onError)
      incoming.pause()
    }
    function onData(chunk: Buffer) {
      size += chunk.length
      if (size > limit) {
        stop()
        resume(Effect.fail(PayloadTooLarge.of(limit)))
      } else {
        chunks.push(chunk)
      }
    }
    function onEnd() {
      stop()
      resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
    }
    function onError() {
      stop()
      resume(Effect.fail(new InvalidRequest({ message: "The request body could not be read" })))
    }
    incoming.on("data", onData).on("end", onEnd).on("error", onError)
    return Effect.sync(stop)
  })

/**
 * The client gets a 503; the outage goes to the log (no stack: it is expected) without flooding
 * it: the first failure after a quiet spell at once, later ones summed up in one line per 10 s.
 * A line per request made 36,225 lines in 30 s of a full disk.
 */
const unavailableLog = Effect.gen(function*() {
  let reporting = false
  let unreported = 0
  let latest = ""
  yield* Effect.suspend(() => {
    if (unreported === 0) {
      reporting = false
      return Effect.void
    }
    const count = unreported
    unreported = 0
    return Effect.logWarning(`Answered 503 to ${count} more request(s) in the last 10 s; the latest: ${latest}`)
  }).pipe(Effect.repeat(Schedule.spaced("10 seconds")), Effect.delay("10 seconds"), Effect.forkScoped)
  return (error: DatabaseError) =>
    Effect.suspend(() => {
      if (!reporting) {
        reporting = true
        return Effect.logWarning(`Answering 503: ${error.message} (further ones are summed up every 10 s)`)
      }
      unreported++
      latest = error.message
      return Effect.void
    }).pipe(
      Effect.zipRight(Effect.fail(new ServiceUnavailable({ message: "The database is unavailable; try again shortly" })))
    )
})

export const group = (api: Api.Routed) =>
  HttpApiBuilder.group(api, "messages", (handlers) =>
    Effect.gen(function*() {
      const config = yield* AppConfig
      const repo = yield* MessageRepo
      const policy = yield* RequestPolicy
      const requestLimit = Api.maxRequestBytes(config.maxBodyBytes)
      const databaseUnavailable = yield* unavailableLog
      // The declared payload, decoded here: the body is read by readText (see there).
      const decodeNewMessage = Schema.decodeUnknown(NewMessage(config.maxBodyBytes))

      return handlers
        .handleRaw("publish", ({ request }) =>
          Effect.gen(function*() {
            const parts = yield* Request.partsOf(request)
            // Who may publish is known before the body is read; where to, once it is.
            const publisher = yield* policy.publisher(parts)
            // A declared length over the limit is refused before a byte of the body is read.
            if (Number(request.headers["content-length"] ?? 0) > requestLimit) return yield* PayloadTooLarge.of(requestLimit)
            if (!(request.source instanceof Readable)) return yield* Effect.dieMessage("The request has no body stream")
            const text = yield* readText(request.source, requestLimit)
            const json = yield* Effect.try({
              try: (): unknown => JSON.parse(text),
              catch: (error) =>
                new InvalidRequest({
                  message: `The request body must be a JSON object such as {"body": "hello"}: ${messageOf(error)}`
                })
            })
            const decoded = yield* decodeNewMessage(json).pipe(
              Effect.mapError((error) => InvalidRequest.fromParseError(error, "The request body"))
            )
            const input = yield* policy.authorizePublish(publisher, decoded)
            const message = yield* repo.insert(input).pipe(Effect.catchTag("DatabaseError", databaseUnavailable))
            return HttpServerResponse.unsafeJson(encodeMessage(message), { status: 201 })
          }))
        .handle("history", ({ request, urlParams }) =>
          Effect.gen(function*() {
            const { after, before, channel, limit } = urlParams
            if (after !== undefined && before !== undefined) {
              return yield* new InvalidRequest({ field: "before", message: "before: give either after or before, not both" })
            }
            yield* policy.reader(yield* Request.partsOf(request), channel)
            // Where a client that found the channel empty goes on from: the newest position read before
            // the page, so that nothing committed after that read is skipped. Not the beginning: once
            // retention has removed anything, /events would answer it with a reset, and a page that
            // reloads on a reset would ask again, forever.
            const newest = after === undefined && before === undefined
              ? yield* repo.head.pipe(Effect.catchTag("DatabaseError", databaseUnavailable))
              : beginning
            const page = yield* repo.history({ channels: channel, after, before, limit }).pipe(
              Effect.catchTag("DatabaseError", databaseUnavailable)
            )
            // An id past the newest message was never issued by this database (or it was restored
            // elsewhere): say so rather than page on silently from nowhere.
            if (after !== undefined && page.messages.length === 0) {
              const head = yield* repo.head.pipe(Effect.catchTag("DatabaseError", databaseUnavailable))
              if (after > head) {
                return yield* new InvalidRequest({
                  field: "after",
                  message: `after: ${after} is ahead of the newest message (${head}); ` +
                    "it was not issued by this database: read the newest page instead"
                })
              }
            }
            const first = page.messages[0]
            const last = page.messages[page.messages.length - 1]
            const forward = after !== undefined
            return {
              messages: page.messages,
              next: forward && page.more && last !== undefined ? last.id : null,
              previous: !forward && page.more && first !== undefined ? first.id : null,
              lastEventId: last?.id ?? after ?? newest
            }
          }))
        // The position of a snapshot taken now (see Snapshot), for a client that is about to read and then
        // follow. It names no channel's content, but the caller must be allowed to read the ones it gives.
        .handle("position", ({ request, urlParams }) =>
          Effect.gen(function*() {
            yield* policy.reader(yield* Request.partsOf(request), urlParams.channel)
            return { position: yield* repo.position.pipe(Effect.catchTag("DatabaseError", databaseUnavailable)) }
          }))
    }))
