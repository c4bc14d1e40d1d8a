/**
 * Which channels a read covers: every channel, or a non-empty set named by the client. The same
 * value is what a history page reads, what an event stream follows and what a token is checked
 * against; `Selection` is its shape for the fan-out, shared by the clients that follow the same set.
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import type { Channel } from "./Message.js"

export type Channels = "all" | NonEmptyReadonlyArray<Channel>

/** The most channels one request may name. */
export const maxChannelsPerRequest = 100

/** Channels named by a request (none: every channel). */
export const channelsOf = (channels: ReadonlyArray<Channel> | undefined): Channels =>
  channels === undefined || channels.length === 0 ? "all" : [channels[0]!, ...channels.slice(1)]

/** The channels one client follows, with a key shared by every client following the same ones. */
export class Selection {
  private constructor(readonly key: string, private readonly channels: ReadonlySet<string> | undefined) {}

  static of(channels: Channels): Selection {
    if (channels === "all") return new Selection("*", undefined)
    const unique = [...new Set(channels)].sort()
    return new Selection(unique.join(","), new Set(unique))
  }

  includes(channel: Channel): boolean {
    return this.channels === undefined || this.channels.has(channel)
  }
}
