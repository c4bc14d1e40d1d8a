/**
 * An identity provider's key set (JWKS) on a local HTTP server, whose keys a test can rotate and
 * which it can take down, counting the fetches.
 */
import { Effect } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"

export interface JwksServer {
  readonly url: string
  /** The keys served from now on. */
  readonly serve: (keys: ReadonlyArray<object>) => void
  /** Answers 500 from now on (or again the keys). */
  readonly setFailing: (failing: boolean) => void
  readonly fetches: () => number
}

export const start = Effect.acquireRelease(
  Effect.async<{ jwks: JwksServer; server: Http.Server }>((resume) => {
    let keys: ReadonlyArray<object> = []
    let failing = false
    let fetches = 0
    const server = Http.createServer((_request, response) => {
      fetches++
      if (failing) {
        response.writeHead(500).end()
        return
      }
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys }))
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      resume(Effect.succeed({
        server,
        jwks: {
          url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
          serve: (next) => {
            keys = next
          },
          setFailing: (value) => {
            failing = value
          },
          fetches: () => fetches
        }
      }))
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map(({ jwks }) => jwks))
