import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, TestClock, Tracer } from "effect"
import * as Crypto from "node:crypto"
import * as Access from "../../src/Access/Tokens.js"
import { liveHeapBytes, megabytes } from "../support/Heap.js"
import { testConfig } from "../support/TestConfig.js"
import * as Tokens from "../support/Tokens.js"

const access = (settings: Record<string, string>) => Access.layer.pipe(Layer.provide(testConfig(settings)))

const verify = (token: string) => Effect.flatMap(Access.Access, (access) => Effect.either(access.verify(token)))

describe("Access", () => {
  it.scoped("allows AUTH_CLOCK_TOLERANCE of clock difference on exp and nbf, and reports the token's end with it", () =>
    Effect.gen(function*() {
      // Tokens made now (real clock); the service's clock is moved around them.
      const now = Math.floor(Date.now() / 1000)
      const expiring = yield* Effect.promise(() => Tokens.hs256({ subscribe: ["a"] }, { expiresIn: 0 }))
      const early = yield* Effect.promise(() => Tokens.hs256({ subscribe: ["a"] }, { notBefore: 0 }))

      yield* TestClock.setTime(now * 1000 + 4000)
      const accepted = yield* verify(expiring)
      expect(accepted._tag).toBe("Right")
      if (accepted._tag === "Right") expect(accepted.right.expiresAt).toBe(now * 1000 + 5000)
      yield* TestClock.setTime(now * 1000 + 6000)
      const expired = yield* verify(expiring)
      expect(expired._tag === "Left" && expired.left.message).toBe("The access token has expired")

      yield* TestClock.setTime(now * 1000 - 4000)
      expect((yield* verify(early))._tag).toBe("Right")
      yield* TestClock.setTime(now * 1000 - 6000)
      const notYet = yield* verify(early)
      expect(notYet._tag === "Left" && notYet.left.message).toBe("The access token is not valid yet (nbf)")
    }).pipe(Effect.provide(access({ AUTH_SECRET: Tokens.secret, AUTH_CLOCK_TOLERANCE: "5 seconds" }))))

  it.scoped("gives a token its own rights plus the anonymous ones, and checks issuer and audience when set", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      const service = yield* Access.Access
      expect(service.enforced).toBe(true)
      expect(service.anonymous.subscribe.allows("lobby")).toBe(true)
      expect(service.anonymous.publish.isEmpty).toBe(true)
      const claims = { iss: "https://id.example", aud: "pollcast" }
      const token = yield* Effect.promise(() => Tokens.hs256({ publish: ["team.*"], admin: true }, { sub: "ada", claims }))
      const principal = yield* service.verify(token)
      expect(principal).toMatchObject({ subject: "ada", author: "ada", admin: true })
      expect(["team.a", "lobby"].map((channel) => principal.subscribe.allows(channel) || principal.publish.allows(channel)))
        .toEqual([true, true])
      const stranger = yield* Effect.promise(() => Tokens.hs256({}, { claims: { ...claims, iss: "https://other.example" } }))
      expect((yield* verify(stranger))._tag).toBe("Left")
      const elsewhere = yield* Effect.promise(() => Tokens.hs256({}, { claims: { ...claims, aud: "another-app" } }))
      expect((yield* verify(elsewhere))._tag).toBe("Left")
    }).pipe(Effect.provide(access({
      AUTH_SECRET: Tokens.secret,
      AUTH_ISSUER: "https://id.example",
      AUTH_AUDIENCE: "pollcast",
      ANONYMOUS_SUBSCRIBE: "lobby"
    }))))

  it.scoped("checks a token's signature once and remembers it for a minute at most, never past its exp", () =>
    Effect.gen(function*() {
      // Signature checks counted by their span, Access.verify.
      const tracer = yield* Effect.tracer
      let checks = 0
      const counting = Tracer.make({
        span: (name, ...rest) => {
          if (name === "Access.verify") checks++
          return tracer.span(name, ...rest)
        },
        context: (f, fiber) => tracer.context(f, fiber)
      })
      const now = Math.floor(Date.now() / 1000)
      const token = yield* Effect.promise(() => Tokens.hs256({ publish: ["a"] }, { expiresIn: 90 }))
      const forged = `${token.slice(0, -4)}AAAA`
      yield* Effect.gen(function*() {
        yield* TestClock.setTime(now * 1000)
        for (let i = 0; i < 3; i++) expect((yield* verify(token))._tag).toBe("Right")
        expect(checks).toBe(1)
        // Refusals are not remembered: each is checked again.
        for (let i = 0; i < 2; i++) expect((yield* verify(forged))._tag).toBe("Left")
        expect(checks).toBe(3)
        // After a minute it is checked again; at its exp it is refused, remembered or not.
        yield* TestClock.setTime(now * 1000 + 61_000)
        expect((yield* verify(token))._tag).toBe("Right")
        expect(checks).toBe(4)
        yield* TestClock.setTime(now * 1000 + 89_000)
        expect((yield* verify(token))._tag).toBe("Right")
        expect(checks).toBe(4)
        yield* TestClock.setTime(now * 1000 + 90_000)
        const expired = yield* verify(token)
        expect(expired._tag === "Left" && expired.left.message).toBe("The access token has expired")
      }).pipe(Effect.withTracer(counting))
    }).pipe(Effect.provide(access({ AUTH_SECRET: Tokens.secret, AUTH_CLOCK_TOLERANCE: "0 seconds" }))))

  it.scoped("keeps nothing of refused tokens, however many distinct ones come, and at most 4,096 verified ones", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      const service = yield* Access.Access
      const [header, payload] = (yield* Effect.promise(() => Tokens.hs256({ subscribe: ["a"] }))).split(".")
      // Wrongly signed, each one different, each about 2,000 characters: what an attacker would send.
      const forged = (index: number) => `${header}.${payload}.${Buffer.from(`${index}`.padEnd(1400, "x")).toString("base64url")}`
      for (let index = 0; index < 200; index++) yield* Effect.either(service.verify(forged(index)))
      const before = liveHeapBytes()
      for (let index = 200; index < 10_200; index++) {
        const refused = yield* Effect.either(service.verify(forged(index)))
        expect(refused._tag).toBe("Left")
      }
      const grown = megabytes(liveHeapBytes() - before)
      expect(grown).toBeLessThan(3)
      expect(service.remembered()).toBe(0)

      for (let index = 0; index < 4_500; index++) {
        const token = yield* Effect.promise(() => Tokens.hs256({ subscribe: ["a"] }, { sub: `user-${index}` }))
        expect((yield* Effect.either(service.verify(token)))._tag).toBe("Right")
      }
      expect(service.remembered()).toBe(4_096)
    }).pipe(Effect.provide(access({ AUTH_SECRET: Tokens.secret }))), 60_000)

  it.scoped("refuses to start with AUTH_PUBLIC_KEY and AUTH_JWKS_URL both set, or a key that is not a public key", () =>
    Effect.gen(function*() {
      const both = yield* Effect.flip(Layer.build(access({
        AUTH_PUBLIC_KEY: "{}",
        AUTH_JWKS_URL: "https://id.example/jwks.json"
      })))
      expect(String(both)).toContain("AUTH_PUBLIC_KEY or AUTH_JWKS_URL, not both")
      const notAKey = yield* Effect.flip(Layer.build(access({ AUTH_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\nxyz\n-----END PUBLIC KEY-----" })))
      expect(String(notAKey)).toContain("AUTH_PUBLIC_KEY")
      const pair = Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
      const privatePem = pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString()
      const privateJwk = JSON.stringify(pair.privateKey.export({ format: "jwk" }))
      for (const key of [privatePem, privateJwk]) {
        const refused = yield* Effect.flip(Layer.build(access({ AUTH_PUBLIC_KEY: key })))
        expect(String(refused)).toContain("AUTH_PUBLIC_KEY")
        expect(String(refused)).toContain("holds a private key")
        expect(String(refused)).not.toContain(key.slice(40, 80))
      }
      const publicPem = pair.publicKey.export({ type: "spki", format: "pem" }).toString()
      expect((yield* Effect.either(Layer.build(access({ AUTH_PUBLIC_KEY: publicPem }))))._tag).toBe("Right")
    }))
})
