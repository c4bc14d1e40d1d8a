/**
 * Mints pollcast access tokens as an issuer would, with jose: the rights under the `pollcast`
 * claim, signed with a secret (HS256) or a private key, or unsigned (`alg: none`). Used by
 * `npm run token`, the benches and the tests.
 */
import * as Jose from "jose"

/** What the token allows (see the README's Security section). */
export interface Rights {
  readonly publish?: ReadonlyArray<string>
  readonly subscribe?: ReadonlyArray<string>
  readonly admin?: boolean
  readonly author?: string
}

export interface Claims {
  /** The `sub` claim, none if undefined. */
  readonly subject?: string | undefined
  /** Seconds from now, or a period such as "30m", "1h", "7d"; undefined: no `exp` claim. */
  readonly expiresIn?: number | string | undefined
  /** Seconds from now. */
  readonly notBefore?: number | undefined
  readonly issuer?: string | undefined
  readonly audience?: string | undefined
  /** Any further claims, as given. */
  readonly claims?: Record<string, unknown> | undefined
}

export interface SigningKey {
  readonly alg: string
  readonly key: Jose.CryptoKey | Jose.KeyObject | Uint8Array
  /** Names the key in the header, for a verifier that holds several. */
  readonly kid?: string | undefined
}

/** The key of an HS256 token signed with `secret` (the service's AUTH_SECRET). */
export const secretKey = (secret: string): SigningKey => ({ alg: "HS256", key: new TextEncoder().encode(secret) })

const withClaims = <J extends Jose.ProduceJWT>(jwt: J, claims: Claims): J => {
  const now = Math.floor(Date.now() / 1000)
  jwt.setIssuedAt(now)
  if (claims.subject !== undefined) jwt.setSubject(claims.subject)
  if (claims.expiresIn !== undefined) {
    jwt.setExpirationTime(typeof claims.expiresIn === "number" ? now + claims.expiresIn : claims.expiresIn)
  }
  if (claims.notBefore !== undefined) jwt.setNotBefore(now + claims.notBefore)
  if (claims.issuer !== undefined) jwt.setIssuer(claims.issuer)
  if (claims.audience !== undefined) jwt.setAudience(claims.audience)
  return jwt
}

const payload = (rights: Rights, claims: Claims) => ({ pollcast: rights, ...claims.claims })

/** A signed token. */
export const mint = (signing: SigningKey, rights: Rights, claims: Claims = {}) =>
  withClaims(new Jose.SignJWT(payload(rights, claims)), claims)
    .setProtectedHeader({ alg: signing.alg, typ: "JWT", ...(signing.kid === undefined ? {} : { kid: signing.kid }) })
    .sign(signing.key)

/** An unsigned token (`alg: none`), which pollcast must never accept. */
export const unsigned = (rights: Rights, claims: Claims = {}) => withClaims(new Jose.UnsecuredJWT(payload(rights, claims)), claims).encode()

/** Whether jose reads `period` (as `expiresIn`): "30m", "1h", "7d" and the like. */
export const isPeriod = (period: string) => {
  try {
    new Jose.UnsecuredJWT().setExpirationTime(period)
    return true
  } catch {
    return false
  }
}
