/**
 * A TCP proxy in front of a server: a network failure between one node and its database, while the
 * database itself stays up for everybody else. `cut` drops every connection and refuses new ones;
 * `stall` keeps the connections but holds their bytes in both directions (a network that stops
 * delivering without telling anybody); `restore` lets everything through again; `retarget` drops
 * every connection and sends new ones to another server (a database replaced under the same
 * address). Used by the
 * integration tests and by the fault soak (scripts/soak.ts).
 */
import { Effect, Redacted } from "effect"
import * as Net from "node:net"

export interface TcpProxy {
  /** `url` with its host and port replaced by the proxy's. */
  readonly url: Redacted.Redacted
  readonly cut: Effect.Effect<void>
  readonly stall: Effect.Effect<void>
  readonly restore: Effect.Effect<void>
  readonly retarget: (target: Redacted.Redacted) => Effect.Effect<void>
}

type State = "open" | "stalled" | "cut"

export const start = (target: Redacted.Redacted) =>
  Effect.acquireRelease(
    Effect.async<{ proxy: TcpProxy; server: Net.Server; sockets: Set<Net.Socket> }>((resume) => {
      let upstream = new URL(Redacted.value(target))
      const sockets = new Set<Net.Socket>()
      let state: State = "open"
      const track = (socket: Net.Socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => socket.destroy())
      }
      // By hand rather than with pipe(), which would resume a stalled socket on its next drain.
      const forward = (from: Net.Socket, to: Net.Socket) => {
        from.on("data", (chunk) => {
          if (!to.write(chunk)) from.pause()
        })
        to.on("drain", () => {
          if (state === "open") from.resume()
        })
        if (state === "stalled") from.pause()
      }
      const server = Net.createServer((client) => {
        track(client)
        if (state === "cut") {
          client.destroy()
          return
        }
        const database = Net.connect(Number(upstream.port), upstream.hostname)
        track(database)
        forward(client, database)
        forward(database, client)
        client.on("close", () => database.destroy())
        database.on("close", () => client.destroy())
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as Net.AddressInfo
        const url = new URL(upstream)
        url.hostname = "127.0.0.1"
        url.port = String(address.port)
        resume(Effect.succeed({
          server,
          sockets,
          proxy: {
            url: Redacted.make(url.toString()),
            cut: Effect.sync(() => {
              state = "cut"
              for (const socket of sockets) socket.destroy()
            }),
            stall: Effect.sync(() => {
              if (state === "cut") return
              state = "stalled"
              for (const socket of sockets) socket.pause()
            }),
            restore: Effect.sync(() => {
              state = "open"
              for (const socket of sockets) socket.resume()
            }),
            retarget: (next) =>
              Effect.sync(() => {
                upstream = new URL(Redacted.value(next))
                for (const socket of sockets) socket.destroy()
              })
          }
        }))
      })
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ proxy }) => proxy))
