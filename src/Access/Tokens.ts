/**
 * Who may do what: the rights of a request, from the JSON Web Token it carries (verified with
 * `jose`) or, without one, from the anonymous settings.
 *
 * A token's rights are in its `pollcast` claim:
 *
 *     { "sub": "ada", "exp": 1767225600,
 *       "pollcast": { "publish": ["team.*"], "subscribe": ["*"], "admin": true, "author": "Ada L." } }
 *
 * `publish` and `subscribe` list channel patterns (see ChannelPattern.ts); `admin` opens the
 * operations endpoints (/stats); `author` is the name messages are stored under (default: `sub`).
 * Every token must have a `sub`, the identity that rate limits count by. A token holder also has
 * whatever anonymous requests are granted.
 *
 * With no key configured nothing is checked: everyone may do everything (development), and
 * start-up says so in one warning line.
 */
import { Clock, ConfigError, Context, Data, Duration, Effect, Layer, Option, ParseResult, Redacted, Schema } from "effect"
import * as Jose from "jose"
import * as Crypto from "node:crypto"
import { ChannelPattern, Patterns } from "../Domain/ChannelPattern.js"
import { AppConfig, type AuthSettings } from "../Config.js"
import { Author } from "../Domain/Message.js"
import { messageOf } from "../Domain/Errors.js"

/** What the bearer of a request may do. */
export interface Principal {
  /** The token's `sub`; undefined for a request without a token. */
  readonly subject: string | undefined
  /** The author a token's messages are stored under; undefined: the request's body names it. */
  readonly author: string | undefined
  readonly publish: Patterns
  readonly subscribe: Patterns
  readonly admin: boolean
  /** When the token stops being accepted, in epoch milliseconds (`exp` plus the clock tolerance). */
  readonly expiresAt: number | undefined
}

const unrestricted: Principal = {
  subject: undefined,
  author: undefined,
  publish: Patterns.all,
  subscribe: Patterns.all,
  admin: true,
  expiresAt: undefined
}

/** The token is malformed, expired, not yet valid, wrongly signed or lacks a claim; `reason` says which. */
export class InvalidToken extends Data.TaggedError("InvalidToken")<{ readonly reason: string }> {
  override get message() {
    return `The access token ${this.reason}`
  }
}

/** The token could not be checked: the key set (AUTH_JWKS_URL) could not be fetched. */
export class VerificationUnavailable extends Data.TaggedError("VerificationUnavailable")<{ readonly cause: unknown }> {
  override get message() {
    return `Access tokens cannot be checked right now: ${messageOf(this.cause)}`
  }
}

export class Access extends Context.Tag("pollcast/Access")<Access, {
  /** Whether a key is configured, so that tokens are checked; if not, every request is `unrestricted`. */
  readonly enforced: boolean
  /** The rights of a request without a token. */
  readonly anonymous: Principal
  /** The rights a token grants, or why it is refused. */
  readonly verify: (token: string) => Effect.Effect<Principal, InvalidToken | VerificationUnavailable>
  /** How many verified tokens are remembered now (at most 4,096). */
  readonly remembered: () => number
}>() {}

/** Longer tokens are refused unread: no sensible token needs more. */
const maxTokenLength = 8192

/**
 * Tokens verified with a key held here (AUTH_SECRET, AUTH_PUBLIC_KEY) are remembered, so that a
 * client's next POST or reconnection with the same token costs a lookup instead of a signature
 * check (about 0.4 ms of the event loop for HS256 through WebCrypto, measured): at most this many,
 * each for at most `verifiedMaxAge` and never past its `exp`. The same string always verifies
 * the same way against the same key, so this changes nothing but the cost. Not with
 * AUTH_JWKS_URL, whose keys can be withdrawn at any time. Longer tokens are not kept, only checked,
 * so that what is remembered stays under 4,096 × 2,048 characters and their principals. A refused
 * token is never kept.
 */
const verifiedCapacity = 4096
const verifiedMaxAge = Duration.minutes(1)
const verifiedMaxLength = 2048

interface Verified {
  readonly principal: Principal
  readonly verifiedAt: number
  readonly validUntil: number
}

/**
 * The tokens verified lately, least recently used first (a Map keeps insertion order). Not
 * effect's Cache: it records every key looked up in its LRU list, and drops a key whose entry was
 * invalidated or expired from that list only once the cache overflows, so distinct refused tokens
 * (each invalidated at once) grew the heap without bound: 66 → 271 MB over 100,000 of them.
 */
class VerifiedTokens {
  private readonly entries = new Map<string, Verified>()

  get size() {
    return this.entries.size
  }

  /** The principal of a token verified and still valid at `now`; an entry past its end is dropped. */
  lookup(token: string, now: number): Principal | undefined {
    const entry = this.entries.get(token)
    if (entry === undefined) return undefined
    this.entries.delete(token)
    // Outside its window (or the clock went back since): checked again.
    if (now < entry.verifiedAt || now >= entry.validUntil) return undefined
    this.entries.set(token, entry)
    return entry.principal
  }

  remember(token: string, entry: Verified) {
    this.entries.delete(token)
    this.entries.set(token, entry)
    if (this.entries.size > verifiedCapacity) this.entries.delete(this.entries.keys().next().value!)
  }
}

const PollcastClaim = Schema.Struct({
  publish: Schema.optionalWith(Schema.Array(ChannelPattern).pipe(Schema.maxItems(256)), { default: () => [] }),
  subscribe: Schema.optionalWith(Schema.Array(ChannelPattern).pipe(Schema.maxItems(256)), { default: () => [] }),
  admin: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  author: Schema.optional(Author)
})

const Claims = Schema.Struct({
  sub: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(255)),
  exp: Schema.optional(Schema.Number),
  pollcast: Schema.optional(PollcastClaim)
})

const decodeClaims = Schema.decodeUnknownEither(Claims)
const isAuthor = Schema.is(Author)

/** How a verification failure reads to the client; anything else is ours (the key set is unreachable). */
const invalidTokenReason = (error: unknown): string | undefined => {
  if (error instanceof Jose.errors.JWTExpired) return "has expired"
  if (error instanceof Jose.errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case "nbf":
        return "is not valid yet (nbf)"
      case "iat":
        return "was issued in the future (iat)"
      case "iss":
        return "comes from another issuer (iss)"
      case "aud":
        return "is meant for another audience (aud)"
      case "sub":
        return "has no sub claim"
      default:
        return `has an invalid ${error.claim} claim`
    }
  }
  if (error instanceof Jose.errors.JWSSignatureVerificationFailed) return "has an invalid signature"
  if (error instanceof Jose.errors.JOSEAlgNotAllowed) return "is signed with an algorithm this service does not accept"
  if (error instanceof Jose.errors.JWKSNoMatchingKey) return "is signed with a key this service does not know (kid)"
  if (error instanceof Jose.errors.JWKSMultipleMatchingKeys) return "matches several keys; give it a kid"
  if (
    error instanceof Jose.errors.JWSInvalid || error instanceof Jose.errors.JWTInvalid ||
    error instanceof Jose.errors.JOSENotSupported
  ) return "is malformed"
  return undefined
}

const asymmetricAlgorithms = ["RS256", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"]

/** The algorithms a public key verifies, from its type; undefined for a type tokens are not signed with. */
const algorithmsOf = (key: Crypto.KeyObject): ReadonlyArray<string> | undefined => {
  switch (key.asymmetricKeyType) {
    case "rsa":
      return ["RS256"]
    case "ed25519":
      return ["EdDSA", "Ed25519"]
    case "ec": {
      const curve = key.asymmetricKeyDetails?.namedCurve
      return curve === "prime256v1" ? ["ES256"] : curve === "secp384r1" ? ["ES384"] : curve === "secp521r1" ? ["ES512"] : undefined
    }
    default:
      return undefined
  }
}

/** AUTH_PUBLIC_KEY: PEM text (literal `\n` allowed, for one-line environment files) or a JWK as JSON. */
/** The members of a JWK that hold private key material (RFC 7518 §6). */
const privateJwkMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]

const importPublicKey = (setting: Redacted.Redacted) =>
  Effect.try({
    try: () => {
      const text = Redacted.value(setting).trim().replaceAll("\\n", "\n")
      // Node derives a public key from a private one without a word; but a private key belongs
      // with the issuer only, and one found here has been copied where it should not be.
      const jwkMembers = text.startsWith("{") ? Object.keys(JSON.parse(text) as object) : []
      if (/PRIVATE KEY-----/.test(text) || privateJwkMembers.some((member) => jwkMembers.includes(member))) {
        throw new Error("it holds a private key: give only the public key (the private one signs tokens, and stays with the issuer)")
      }
      const key = text.startsWith("{")
        ? Crypto.createPublicKey({ key: JSON.parse(text) as Crypto.JsonWebKey, format: "jwk" })
        : Crypto.createPublicKey(text)
      const algorithms = algorithmsOf(key)
      if (algorithms === undefined) throw new Error(`a ${key.asymmetricKeyType ?? "symmetric"} key cannot verify tokens`)
      return { key, algorithms }
    },
    catch: (error) =>
      ConfigError.InvalidData(
        ["AUTH_PUBLIC_KEY"],
        `must be a PEM public key (-----BEGIN PUBLIC KEY-----) or a JWK, of an RSA, P-256 or Ed25519 key: ${
          messageOf(error)
        }`
      )
  })

/** The verification key for each accepted algorithm, from whichever settings are present. */
const keys = (settings: AuthSettings) =>
  Effect.gen(function*() {
    if (Option.isSome(settings.publicKey) && Option.isSome(settings.jwksUrl)) {
      return yield* Effect.fail(ConfigError.InvalidData(["AUTH_JWKS_URL"], "set AUTH_PUBLIC_KEY or AUTH_JWKS_URL, not both"))
    }
    // Imported once: jose would import raw bytes again for every token (half the cost of a check).
    const secretSetting = settings.secret
    const secret = Option.isSome(secretSetting)
      ? Option.some(
        yield* Effect.promise(() =>
          globalThis.crypto.subtle.importKey(
            "raw",
            new TextEncoder().encode(Redacted.value(secretSetting.value)),
            { name: "HMAC", hash: "SHA-256" },
            false,
            ["verify"]
          )
        )
      )
      : Option.none()
    const publicKey = Option.isSome(settings.publicKey) ? Option.some(yield* importPublicKey(settings.publicKey.value)) : Option.none()
    const jwks = Option.map(settings.jwksUrl, (url) =>
      Jose.createRemoteJWKSet(url, {
        cacheMaxAge: Duration.toMillis(settings.jwksMaxAge),
        cooldownDuration: Duration.toMillis(settings.jwksCooldown),
        timeoutDuration: 5000
      }))
    const algorithms = [
      ...(Option.isSome(secret) ? ["HS256"] : []),
      ...Option.match(publicKey, { onNone: () => [], onSome: (key) => key.algorithms }),
      ...(Option.isSome(jwks) ? asymmetricAlgorithms : [])
    ]
    // jose has already refused any algorithm outside `algorithms` (`none` included) when it asks.
    const getKey: Jose.JWTVerifyGetKey = async (header, token) => {
      if (header.alg === "HS256" && Option.isSome(secret)) return secret.value
      if (Option.isSome(publicKey)) return publicKey.value.key
      if (Option.isSome(jwks)) return jwks.value(header, token)
      throw new Jose.errors.JOSEAlgNotAllowed(`${header.alg} is not accepted`)
    }
    return { algorithms, getKey, jwks, configured: algorithms.length > 0 }
  })

export const make = Effect.gen(function*() {
  const config = yield* AppConfig
  const settings = config.auth
  const { algorithms, configured, getKey, jwks } = yield* keys(settings)
  const orNothing = (patterns: Option.Option<ReadonlyArray<string>>, fallback: Patterns) =>
    Option.match(patterns, { onNone: () => fallback, onSome: Patterns.of })

  // Without a key the anonymous settings still apply if given; unset, they mean everything.
  const fallback = configured ? Patterns.none : Patterns.all
  const anonymous: Principal = {
    ...unrestricted,
    publish: orNothing(settings.anonymousPublish, fallback),
    subscribe: orNothing(settings.anonymousSubscribe, fallback),
    admin: !configured
  }
  const toleranceMillis = Duration.toMillis(settings.clockTolerance)

  if (!configured) {
    yield* Effect.logWarning(
      "ACCESS CONTROL IS OFF: no AUTH_SECRET, AUTH_PUBLIC_KEY or AUTH_JWKS_URL is set, so tokens are not checked and " +
        (Option.isNone(settings.anonymousPublish) && Option.isNone(settings.anonymousSubscribe)
          ? "anyone who can reach this node may publish to and read every channel, and read /stats"
          : "every request gets what ANONYMOUS_PUBLISH and ANONYMOUS_SUBSCRIBE grant (unset: everything), and /stats is open")
    )
  }
  if (Option.isSome(jwks)) {
    // Fetched once at start-up only to report a wrong URL early; tokens are checked either way.
    yield* Effect.tryPromise(() => jwks.value.reload()).pipe(
      Effect.tapError((error) =>
        Effect.logWarning(`AUTH_JWKS_URL could not be fetched (tokens are refused until it can): ${error.message}`)
      ),
      Effect.ignore,
      Effect.forkScoped
    )
  }

  const principalOf = (payload: unknown) =>
    Effect.gen(function*() {
      const decoded = decodeClaims(payload)
      if (decoded._tag === "Left") {
        const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
        const path = issue === undefined ? "" : issue.path.join(".")
        return yield* new InvalidToken({ reason: `has a malformed claim ${path}: ${issue?.message ?? ""}`.trim() })
      }
      const claims = decoded.right
      const rights = claims.pollcast
      return {
        subject: claims.sub,
        author: rights?.author ?? (isAuthor(claims.sub) ? claims.sub : undefined),
        publish: Patterns.of(rights?.publish ?? []).union(anonymous.publish),
        subscribe: Patterns.of(rights?.subscribe ?? []).union(anonymous.subscribe),
        admin: rights?.admin ?? false,
        expiresAt: claims.exp === undefined ? undefined : claims.exp * 1000 + toleranceMillis
      } satisfies Principal
    })

  const options = (now: number): Jose.JWTVerifyOptions => ({
    algorithms,
    clockTolerance: toleranceMillis / 1000,
    currentDate: new Date(now),
    requiredClaims: ["sub"],
    ...Option.match(settings.issuer, { onNone: () => ({}), onSome: (issuer) => ({ issuer }) }),
    ...Option.match(settings.audience, { onNone: () => ({}), onSome: (audience) => ({ audience }) })
  })

  const check = (token: string) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const { payload } = yield* Effect.tryPromise({
        try: () => Jose.jwtVerify(token, getKey, options(now)),
        catch: (error) => {
          const reason = invalidTokenReason(error)
          return reason === undefined ? new VerificationUnavailable({ cause: error }) : new InvalidToken({ reason })
        }
      })
      const principal = yield* principalOf(payload)
      const validUntil = Math.min(principal.expiresAt ?? Infinity, now + Duration.toMillis(verifiedMaxAge))
      return { principal, verifiedAt: now, validUntil } satisfies Verified
    }).pipe(Effect.withSpan("Access.verify"))

  const verified = Option.isNone(jwks) ? Option.some(new VerifiedTokens()) : Option.none()

  const verify = (token: string): Effect.Effect<Principal, InvalidToken | VerificationUnavailable> => {
    if (token.length > maxTokenLength) {
      return new InvalidToken({ reason: `is longer than ${maxTokenLength} characters` })
    }
    if (Option.isNone(verified) || token.length > verifiedMaxLength) return Effect.map(check(token), (entry) => entry.principal)
    const tokens = verified.value
    return Effect.gen(function*() {
      const known = tokens.lookup(token, yield* Clock.currentTimeMillis)
      if (known !== undefined) return known
      const entry = yield* check(token)
      tokens.remember(token, entry)
      return entry.principal
    })
  }

  const remembered = () => Option.match(verified, { onNone: () => 0, onSome: (tokens) => tokens.size })
  return Access.of({ enforced: configured, anonymous, verify, remembered })
})

export const layer = Layer.scoped(Access, make)
