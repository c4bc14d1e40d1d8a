/**
 * Query parameters shared by the routes, as schemas: a failure names the parameter at fault.
 */
import { Schema } from "effect"
import { Channel } from "../Domain/Message.js"
import { maxChannelsPerRequest } from "../Domain/Channels.js"

/** `channel=a&channel=b`: one or more channel names (none: every channel). */
export const ChannelsParam = Schema.Union(Schema.String, Schema.Array(Schema.String)).pipe(
  Schema.transform(Schema.Array(Schema.String), {
    strict: true,
    decode: (value) => (typeof value === "string" ? [value] : value),
    encode: (value) => value
  }),
  Schema.compose(Schema.Array(Channel)),
  Schema.maxItems(maxChannelsPerRequest, {
    message: () => `at most ${maxChannelsPerRequest} channels may be named at once`
  })
)

export const LimitParam = (max: number) =>
  Schema.NumberFromString.pipe(
    Schema.int(),
    Schema.between(1, max),
    Schema.annotations({ message: () => ({ message: `must be a whole number from 1 to ${max}`, override: true }) })
  )
