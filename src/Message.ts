/**
 * The domain: a stored message, the input that creates one, and the id that orders them.
 *
 * A message's position in the delivery order is the pair (transaction id, sequence number) of the
 * row that stores it (see MessageRepo for why). Its id is that pair as two 16-digit lowercase hex
 * numbers joined by "-", so ids compare as plain strings in delivery order, and the same id means
 * the same position on every node.
 */
import { Schema } from "effect"

export const channelPattern = /^[A-Za-z0-9_.:-]{1,64}$/

export const Channel = Schema.String.pipe(
  Schema.pattern(channelPattern, {
    message: () => "must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-'"
  }),
  Schema.brand("Channel")
)
export type Channel = typeof Channel.Type

export const defaultChannel = Channel.make("general")
export const defaultAuthor = "anonymous"
export const maxAuthorCharacters = 64

const codePoints = (text: string) => {
  let count = 0
  for (const _ of text) count++
  return count
}

export const Author = Schema.String.pipe(
  Schema.filter((author) => author.length > 0 && codePoints(author) <= maxAuthorCharacters, {
    message: () => `must be 1 to ${maxAuthorCharacters} characters (leave it out to post as "${defaultAuthor}")`
  }),
  Schema.filter((author) => !author.includes("\u0000"), { message: () => "must not contain NUL characters" })
)

const idPattern = /^[0-9a-f]{16}-[0-9a-f]{16}$/

export const MessageId = Schema.String.pipe(
  Schema.pattern(idPattern, {
    message: () => "must be a message id as sent by pollcast (16 hex digits, '-', 16 hex digits)"
  }),
  Schema.brand("MessageId")
)
export type MessageId = typeof MessageId.Type

const hex16 = (value: bigint | string) => BigInt(value).toString(16).padStart(16, "0")

/** The id of the row written by transaction `txid` with sequence number `seq`. */
export const messageId = (txid: bigint | string, seq: bigint | string): MessageId =>
  MessageId.make(`${hex16(txid)}-${hex16(seq)}`)

/** The (transaction id, sequence number) of an id, as decimal strings for SQL parameters. */
export const messageIdParts = (id: MessageId): { readonly txid: string; readonly seq: string } => ({
  txid: BigInt(`0x${id.slice(0, 16)}`).toString(),
  seq: BigInt(`0x${id.slice(17)}`).toString()
})

/** The position before every message: resuming from it replays everything. */
export const beginning = messageId(0n, 0n)

export const maxId = (a: MessageId, b: MessageId): MessageId => (a > b ? a : b)

export class Message extends Schema.Class<Message>("Message")({
  id: MessageId,
  channel: Channel,
  author: Schema.String,
  body: Schema.String,
  createdAt: Schema.Date
}) {}

export const encodeMessage = Schema.encodeSync(Message)

/** What a client sends to publish; `maxBodyBytes` bounds the UTF-8 size of `body`. */
export const NewMessage = (maxBodyBytes: number) =>
  Schema.Struct({
    channel: Schema.optionalWith(Channel, { default: () => defaultChannel }),
    author: Schema.optionalWith(Author, { default: () => defaultAuthor }),
    body: Schema.String.pipe(
      Schema.filter((body) => body.length > 0, { message: () => "must not be empty" }),
      Schema.filter((body) => Buffer.byteLength(body, "utf8") <= maxBodyBytes, {
        message: () => `must be at most ${maxBodyBytes} bytes of UTF-8`
      }),
      Schema.filter((body) => !body.includes("\u0000"), { message: () => "must not contain NUL characters" })
    )
  })
export type NewMessage = ReturnType<typeof NewMessage>["Type"]
