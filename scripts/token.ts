/**
 * `npm run token`: mints an access token for pollcast (see the README's Security section).
 *
 *   AUTH_SECRET=... npm run --silent token -- --sub ada --publish 'team.*' --subscribe '*'
 *   npm run --silent token -- --key private.pem --kid 2026-11 --sub ci-bot --publish 'ci.*'
 *   npm run --silent token -- --new-secret
 *
 * Signs with AUTH_SECRET (HS256), or with the private key in --key (PEM, PKCS#8: RS256 for RSA,
 * ES256 for P-256, EdDSA for Ed25519). Prints the token alone, so that it can be captured.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { parseArgs } from "node:util"
import { channelPatternSyntax } from "../src/Domain/ChannelPattern.js"
import * as Tokens from "./support/Tokens.js"

const usage = `Usage: npm run --silent token -- --sub NAME [--publish PATTERN]... [--subscribe PATTERN]...
       [--admin] [--author NAME] [--expires 1h|30m|7d|never] [--key private.pem] [--kid ID]
       [--issuer ISS] [--audience AUD]
   or: npm run --silent token -- --new-secret

Patterns: a channel name, a prefix ending in * (team.*), or * for every channel; repeat the option
or separate patterns with commas. Signed with AUTH_SECRET from the environment unless --key is given.`

const fail = (message: string): never => {
  console.error(`${message}\n\n${usage}`)
  process.exit(2)
}

const { values } = parseArgs({
  options: {
    sub: { type: "string" },
    publish: { type: "string", multiple: true, default: [] },
    subscribe: { type: "string", multiple: true, default: [] },
    admin: { type: "boolean", default: false },
    author: { type: "string" },
    expires: { type: "string", default: "1h" },
    key: { type: "string" },
    kid: { type: "string" },
    issuer: { type: "string" },
    audience: { type: "string" },
    "new-secret": { type: "boolean", default: false },
    help: { type: "boolean", default: false }
  }
})

if (values.help) {
  console.log(usage)
  process.exit(0)
}
if (values["new-secret"]) {
  console.log(Crypto.randomBytes(48).toString("base64url"))
  process.exit(0)
}
if (values.sub === undefined || values.sub === "") fail("--sub is required: the token's subject, who it is for.")

const patterns = (list: ReadonlyArray<string>) => {
  const items = list.flatMap((item) => item.split(",")).map((item) => item.trim()).filter((item) => item !== "")
  for (const item of items) {
    if (!channelPatternSyntax.test(item)) fail(`${JSON.stringify(item)} is not a channel pattern.`)
  }
  return items
}

const algorithmOf = (key: Crypto.KeyObject) => {
  switch (key.asymmetricKeyType) {
    case "rsa":
      return "RS256"
    case "ed25519":
      return "EdDSA"
    case "ec":
      if (key.asymmetricKeyDetails?.namedCurve === "prime256v1") return "ES256"
  }
  return fail(`--key: a ${key.asymmetricKeyType} key cannot sign pollcast tokens (use RSA, P-256 or Ed25519)`)
}

const signingKey = (): Tokens.SigningKey => {
  if (values.key !== undefined) {
    const key = Crypto.createPrivateKey(Fs.readFileSync(values.key))
    return { key, alg: algorithmOf(key), kid: values.kid }
  }
  const secret = process.env.AUTH_SECRET ?? ""
  if (secret === "") return fail("Set AUTH_SECRET (the service's) or give --key.")
  return { ...Tokens.secretKey(secret), kid: values.kid }
}

const signing = signingKey()
if (values.expires !== "never" && !Tokens.isPeriod(values.expires)) {
  fail(`--expires ${values.expires}: write a period such as 30m, 1h, 7d, or never.`)
}
const rights = {
  publish: patterns(values.publish),
  subscribe: patterns(values.subscribe),
  ...(values.admin ? { admin: true } : {}),
  ...(values.author === undefined ? {} : { author: values.author })
}
console.log(
  await Tokens.mint(signing, rights, {
    subject: values.sub!,
    expiresIn: values.expires === "never" ? undefined : values.expires,
    issuer: values.issuer,
    audience: values.audience
  })
)
