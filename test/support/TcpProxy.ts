/**
 * A TCP proxy in front of a server, that a test can cut (every connection dropped, new ones
 * refused) and restore: a network failure between one node and its database, while the database
 * itself stays up for everybody else.
 */
import { Effect, Redacted } from "effect"
import * as Net from "node:net"

export interface TcpProxy {
  /** `url` with its host and port replaced by the proxy's. */
  readonly url: Redacted.Redacted
  readonly cut: Effect.Effect<void>
  readonly restore: Effect.Effect<void>
}

export const start = (target: Redacted.Redacted) =>
  Effect.acquireRelease(
    Effect.async<{ proxy: TcpProxy; server: Net.Server; sockets: Set<Net.Socket> }>((resume) => {
      const upstream = new URL(Redacted.value(target))
      const sockets = new Set<Net.Socket>()
      let open = true
      const track = (socket: Net.Socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => socket.destroy())
      }
      const server = Net.createServer((client) => {
        track(client)
        if (!open) {
          client.destroy()
          return
        }
        const database = Net.connect(Number(upstream.port), upstream.hostname)
        track(database)
        client.pipe(database).pipe(client)
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
              open = false
              for (const socket of sockets) socket.destroy()
            }),
            restore: Effect.sync(() => {
              open = true
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
