/**
 * What a principal may do, decided from its token's claims alone: pure functions, each the
 * principal's answer or the error the request gets (401 with no token, 403 with one that does not
 * allow it).
 */
import { Either } from "effect"
import type { Channels } from "../Domain/Channels.js"
import { Forbidden, Unauthorized } from "../Domain/Errors.js"
import { maxAuthorCharacters, type NewMessage } from "../Domain/Message.js"
import type { Principal } from "./Tokens.js"

const refuse = (who: Principal, action: string, what: string): Either.Either<never, Unauthorized | Forbidden> =>
  Either.left(
    who.subject === undefined
      ? new Unauthorized({ message: `An access token is needed to ${action} ${what}` })
      : new Forbidden({ field: "channel", message: `This token may not ${action} ${what}` })
  )

/** `who`, if it may read `channels`. */
export const read = (who: Principal, channels: Channels): Either.Either<Principal, Unauthorized | Forbidden> => {
  if (channels === "all") {
    return who.subscribe.everything
      ? Either.right(who)
      : refuse(who, "read", "every channel: name the channels (?channel=), or use a token that may subscribe to *")
  }
  const refused = channels.find((channel) => !who.subscribe.allows(channel))
  return refused === undefined ? Either.right(who) : refuse(who, "read", `channel "${refused}"`)
}

/** `who`, if it may publish at all. */
export const publishAny = (who: Principal): Either.Either<Principal, Unauthorized | Forbidden> =>
  who.publish.isEmpty ? refuse(who, "publish to", "any channel") : Either.right(who)

const unverifiedMark = "~"

/**
 * The message as it is to be stored, if `who` may publish it. With access control on (`enforced`), a
 * token holder posts under the token's name, whatever the body says, and a name nobody vouched for
 * is marked so (`~ada`), so that no reader takes it for the token holder ada's; with it off, no name
 * is vouched for, and none marked.
 */
export const publish = (
  who: Principal,
  message: NewMessage,
  enforced: boolean
): Either.Either<NewMessage, Unauthorized | Forbidden> => {
  if (!who.publish.allows(message.channel)) return refuse(who, "publish to", `channel "${message.channel}"`)
  if (who.subject === undefined) {
    if (!enforced) return Either.right(message)
    const author = `${unverifiedMark}${Array.from(message.author).slice(0, maxAuthorCharacters - 1).join("")}`
    return Either.right({ ...message, author })
  }
  return who.author === undefined
    ? Either.left(
      new Forbidden({
        message: "This token names no author: its sub is longer than 64 characters, so give it a pollcast.author claim"
      })
    )
    : Either.right({ ...message, author: who.author })
}

/** Succeeds if `who` may see the service's internals (/stats, /metrics). */
export const operate = (who: Principal): Either.Either<void, Unauthorized | Forbidden> =>
  who.admin
    ? Either.void
    : Either.left(
      who.subject === undefined
        ? new Unauthorized({ message: "An access token with the admin claim is needed" })
        : new Forbidden({ message: "This token has no admin claim" })
    )
