/**
 * The reference page's scripts go out compressed to clients that take gzip: Scalar's is 3.4 MB as text.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as Http from "node:http"
import * as Zlib from "node:zlib"
import * as TestDatabase from "../support/TestDatabase.js"
import * as TestNode from "../support/TestNode.js"

/** The raw answer, bytes as sent (fetch would decompress them). */
const raw = (url: string, headers: Record<string, string>) =>
  Effect.async<{ readonly headers: Http.IncomingHttpHeaders; readonly body: Buffer }, Error>((resume) => {
    Http.get(url, { headers, agent: false }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () => resume(Effect.succeed({ headers: response.headers, body: Buffer.concat(chunks) })))
    }).on("error", (error) => resume(Effect.fail(error)))
  })

layer(TestDatabase.layer, { timeout: 120_000, excludeTestServices: true })("docs", (it) => {
  it.scoped("serves the reference page's scripts in gzip to clients that take it, and as they are to others", () =>
    Effect.gen(function*() {
      const node = yield* TestNode.start()
      const page = (yield* raw(node.url("/docs"), {})).body.toString("utf8")
      const paths = [...page.matchAll(/src="(\/docs\/[0-9a-f]+\.js)"/g)].map((match) => match[1]!)
      expect(paths.length).toBe(2)
      const scalar = paths[0]!
      const plain = yield* raw(node.url(scalar), {})
      expect(plain.headers["content-encoding"]).toBeUndefined()
      expect(plain.headers.vary).toBe("accept-encoding")
      expect(plain.body.length).toBeGreaterThan(1_000_000)
      const compressed = yield* raw(node.url(scalar), { "accept-encoding": "gzip, deflate, br" })
      expect(compressed.headers["content-encoding"]).toBe("gzip")
      expect(compressed.body.length).toBeLessThan(plain.body.length / 2)
      expect(Zlib.gunzipSync(compressed.body).equals(plain.body)).toBe(true)
      const refused = yield* raw(node.url(scalar), { "accept-encoding": "gzip;q=0, identity" })
      expect(refused.headers["content-encoding"]).toBeUndefined()
    }))
})
