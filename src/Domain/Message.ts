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

/**
 * Text as PostgreSQL can store it: well-formed UTF-16 (a lone surrogate would silently become
 * U+FFFD on its way to the database) and no NUL (which `text` cannot hold).
 */
const storableText = <S extends Schema.Schema.Any>(schema: S) =>
  schema.pipe(
    Schema.filter((text: string) => text.isWellFormed(), {
      message: () => "must be valid Unicode text (it contains a lone surrogate, such as \\ud800 alone)"
    }),
    Schema.filter((text: string) => !text.includes("\u0000"), { message: () => "must not contain NUL characters" })
  )

/** Trimmed, so that an author of only spaces is refused rather than stored blank. */
export const Author = storableText(
  Schema.Trim.pipe(
    Schema.filter((author) => author.length > 0, {
      message: () => `must not be blank (leave it out to post as "${defaultAuthor}")`
    }),
    Schema.filter((author) => codePoints(author) <= maxAuthorCharacters, {
      message: () => `must be at most ${maxAuthorCharacters} characters`
    })
  )
)

/**
 * Both halves are what the database holds: the transaction id an unsigned 64-bit `xid8`, the
 * sequence number a signed 64-bit `bigint`, so at most 7fffffffffffffff.
 */
const idPattern = /^[0-9a-f]{16}-[0-7][0-9a-f]{15}$/

export const idRule = "16 hex digits, '-', 16 hex digits, the second at most 7fffffffffffffff"

export const MessageId = Schema.String.pipe(
  Schema.pattern(idPattern, { message: () => `must be a message id as sent by pollcast (${idRule})` }),
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

/** The largest MAX_BODY_BYTES a node may be given. */
export const maxBodyBytesLimit = 1_048_576

/** A message's text: 1 to `maxBodyBytes` bytes of UTF-8, storable. */
export const MessageBody = (maxBodyBytes: number) =>
  storableText(
    Schema.String.pipe(
      Schema.filter((body) => body.length > 0, { message: () => "must not be empty" }),
      Schema.filter((body) => Buffer.byteLength(body, "utf8") <= maxBodyBytes, {
        message: () => `must be at most ${maxBodyBytes} bytes of UTF-8`
      })
    )
  ).annotations({ description: `The text, 1 to ${maxBodyBytes} bytes of UTF-8, no NUL` })

/**
 * What a client sends to publish; `maxBodyBytes` bounds the UTF-8 size of `body`. Channel and author
 * may be left out; a field it does not know is refused rather than dropped.
 */
export const NewMessage = (maxBodyBytes: number) =>
  Schema.Struct({
    channel: Schema.optionalWith(Channel.annotations({ default: defaultChannel }), { default: () => defaultChannel }),
    author: Schema.optionalWith(
      Author.annotations({ default: defaultAuthor, description: "Ignored when the request carries an access token" }),
      { default: () => defaultAuthor }
    ),
    body: MessageBody(maxBodyBytes)
  }).annotations({ identifier: "NewMessage", parseOptions: { onExcessProperty: "error" } })
export type NewMessage = ReturnType<typeof NewMessage>["Type"]
