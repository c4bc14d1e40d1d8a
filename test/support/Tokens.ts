/**
 * Access tokens for tests, with the tests' defaults (their AUTH_SECRET, the subject "ada", an
 * hour to live), minted by the scripts' token helper: signed with a secret or a key pair, or
 * unsigned (`alg: none`), with any claims.
 */
import * as Jose from "jose"
import * as Tokens from "../../scripts/support/Tokens.js"

export const secret = "a test secret, long enough for HS256: 32+ bytes"

export type Rights = Tokens.Rights

export interface Options {
  /** Seconds from now; undefined: in an hour; null: no exp claim. */
  readonly expiresIn?: number | null
  /** Seconds from now. */
  readonly notBefore?: number
  readonly sub?: string | null
  readonly claims?: Record<string, unknown>
}

const claimsOf = (options: Options): Tokens.Claims => ({
  subject: options.sub === null ? undefined : options.sub ?? "ada",
  expiresIn: options.expiresIn === null ? undefined : options.expiresIn ?? 3600,
  notBefore: options.notBefore,
  claims: options.claims
})

/** An HS256 token, with `key` (default: the tests' AUTH_SECRET). */
export const hs256 = (rights: Rights, options: Options = {}, key = secret) => Tokens.mint(Tokens.secretKey(key), rights, claimsOf(options))

/** A token signed with a private key, naming it by `kid`. */
export const signed = (
  alg: string,
  key: Jose.CryptoKey | Uint8Array,
  rights: Rights,
  options: Options & { readonly kid?: string } = {}
) => Tokens.mint({ alg, key, kid: options.kid }, rights, claimsOf(options))

/** An unsigned token (`alg: none`), which must never be accepted. */
export const unsigned = (rights: Rights, options: Options = {}) => Tokens.unsigned(rights, claimsOf(options))

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
