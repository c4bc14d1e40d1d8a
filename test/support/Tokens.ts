/**
 * Access tokens for tests, made with jose as an issuer would: signed with a secret or a key pair,
 * or unsigned (`alg: none`), with any claims.
 */
import * as Jose from "jose"

export const secret = "a test secret, long enough for HS256: 32+ bytes"

export interface Rights {
  readonly publish?: ReadonlyArray<string>
  readonly subscribe?: ReadonlyArray<string>
  readonly admin?: boolean
  readonly author?: string
}

export interface Options {
  /** Seconds from now; undefined: in an hour; null: no exp claim. */
  readonly expiresIn?: number | null
  /** Seconds from now. */
  readonly notBefore?: number
  readonly sub?: string | null
  readonly claims?: Record<string, unknown>
}

const now = () => Math.floor(Date.now() / 1000)

const payload = (rights: Rights, options: Options) => {
  const claims: Record<string, unknown> = { pollcast: rights, iat: now(), ...options.claims }
  if (options.sub !== null) claims.sub = options.sub ?? "ada"
  if (options.expiresIn !== null) claims.exp = now() + (options.expiresIn ?? 3600)
  if (options.notBefore !== undefined) claims.nbf = now() + options.notBefore
  return claims
}

/** An HS256 token, with `key` (default: the tests' AUTH_SECRET). */
export const hs256 = (rights: Rights, options: Options = {}, key = secret) =>
  new Jose.SignJWT(payload(rights, options)).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(
    new TextEncoder().encode(key)
  )

/** A token signed with a private key, naming it by `kid`. */
export const signed = (
  alg: string,
  key: Jose.CryptoKey | Uint8Array,
  rights: Rights,
  options: Options & { readonly kid?: string } = {}
) =>
  new Jose.SignJWT(payload(rights, options)).setProtectedHeader({
    alg,
    typ: "JWT",
    ...(options.kid === undefined ? {} : { kid: options.kid })
  }).sign(key)

/** An unsigned token (`alg: none`), which must never be accepted. */
export const unsigned = (rights: Rights, options: Options = {}) => new Jose.UnsecuredJWT(payload(rights, options)).encode()

/** A key pair, its public half as PEM and as a JWK with `kid` and `alg`. */
export const keyPair = async (alg: "RS256" | "ES256" | "EdDSA", kid: string) => {
  const { privateKey, publicKey } = await Jose.generateKeyPair(alg, { extractable: true })
  return {
    alg,
    kid,
    privateKey,
    pem: await Jose.exportSPKI(publicKey),
    jwk: { ...(await Jose.exportJWK(publicKey)), kid, alg, use: "sig" }
  }
}
export type KeyPair = Awaited<ReturnType<typeof keyPair>>
