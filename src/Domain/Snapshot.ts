/**
 * Where a client resumes when it began from a database snapshot (`pollcast_position()`, `GET
 * /position`): the messages after an id that the snapshot did not see.
 *
 * Delivery order is (transaction id, sequence number); a snapshot sees every transaction older than
 * its oldest running one (`xmin`), none from `xmax` on, and between them all but those that were
 * running (`running`). Those sort among ones it sees, so no single id says what it saw: the
 * position is the newest message older than `xmin`, followed by the snapshot, written
 * `<id>@<xmin>:<xmax>:<running,…>` as PostgreSQL writes snapshots. Messages delivered from it carry
 * the same suffix in their SSE id while their transaction is below `xmax`, so that a client that
 * reconnects with Last-Event-ID goes on skipping what the snapshot saw; after that, plain ids.
 */
import { Either, Schema } from "effect"
import { MessageId, messageIdParts } from "./Message.js"

/** The most transactions still running that a position may name (each up to 20 digits). */
export const maxRunning = 200

const decimal = /^(0|[1-9][0-9]{0,18})$/
/** Transaction ids are unsigned 64-bit; PostgreSQL's epoch keeps them far below 2^63. */
const maxTxid = 2n ** 63n - 1n

export class Snapshot {
  private constructor(
    readonly xmin: bigint,
    readonly xmax: bigint,
    private readonly running: ReadonlySet<bigint>,
    /** As written after the `@`. */
    readonly text: string
  ) {}

  /** `xmin:xmax:running,…`, or what is wrong with it. */
  static parse(text: string): Either.Either<Snapshot, string> {
    const parts = text.split(":")
    if (parts.length !== 3) return Either.left("a snapshot is written xmin:xmax:running,…")
    const [xminText, xmaxText, runningText] = parts as [string, string, string]
    const running = runningText === "" ? [] : runningText.split(",")
    if (running.length > maxRunning) return Either.left(`a snapshot names at most ${maxRunning} running transactions`)
    const numbers = [xminText, xmaxText, ...running]
    if (!numbers.every((number) => decimal.test(number) && BigInt(number) <= maxTxid)) {
      return Either.left("a snapshot's transaction ids are decimal numbers below 2^63")
    }
    const [xmin, xmax] = [BigInt(xminText), BigInt(xmaxText)]
    const ids = running.map(BigInt)
    if (xmin > xmax || !ids.every((id) => id >= xmin && id < xmax)) {
      return Either.left("a snapshot's running transactions lie in [xmin, xmax)")
    }
    return Either.right(new Snapshot(xmin, xmax, new Set(ids), text))
  }

  /** Whether the snapshot saw what transaction `txid` wrote (and so the client has it). */
  sees(txid: bigint): boolean {
    return txid < this.xmin || (txid < this.xmax && !this.running.has(txid))
  }

  /** Whether a message of `txid` or later may still be one the snapshot saw. */
  mattersAt(txid: bigint): boolean {
    return txid < this.xmax
  }
}

/** A client's starting point: after `after`, skipping what `snapshot` saw, if any. */
export interface ResumePoint {
  readonly after: MessageId
  readonly snapshot: Snapshot | undefined
}

export const txidOf = (id: MessageId): bigint => BigInt(messageIdParts(id).txid)

const decodeId = Schema.decodeUnknownEither(MessageId)

/** A Last-Event-ID (or `lastEventId`): an id, or an id `@` a snapshot; or what is wrong with it. */
export const parseResumePoint = (text: string): Either.Either<ResumePoint, string> => {
  const at = text.indexOf("@")
  const id = decodeId(at === -1 ? text : text.slice(0, at))
  if (Either.isLeft(id)) return Either.left("not an id sent by pollcast")
  if (at === -1) return Either.right({ after: id.right, snapshot: undefined })
  return Either.map(Snapshot.parse(text.slice(at + 1)), (snapshot) => ({
    after: id.right,
    // Past xmax the snapshot says nothing more.
    snapshot: snapshot.mattersAt(txidOf(id.right) + 1n) ? snapshot : undefined
  }))
}

/** A Last-Event-ID as the API declares it: a message id, or one followed by a snapshot. */
export const Position = Schema.String.pipe(
  Schema.filter((text) => Either.isRight(parseResumePoint(text)), {
    message: () => "must be a message id sent by pollcast, or a position from pollcast_position() or GET /position"
  })
).annotations({
  description: "A message id, or a position from pollcast_position() or GET /position: `<id>` or `<id>@<xmin>:<xmax>:<running,…>`"
})

/** The SSE id of a message delivered to a client that resumed from `snapshot`. */
export const idAfter = (id: MessageId, snapshot: Snapshot | undefined): string =>
  snapshot !== undefined && snapshot.mattersAt(txidOf(id)) ? `${id}@${snapshot.text}` : id
