/**
 * An event stream's connection, taken over from Node's HTTP server once the stream's head is sent,
 * the way Node itself hands over a connection upgraded to another protocol (a WebSocket's): the
 * server's listeners come off the socket, its HTTP parser goes back to Node's pool, and the
 * response lets go of the socket. An event stream never carries another request, so nothing is
 * lost; what is gained is what Node keeps per connection for HTTP (the native parser, the request
 * and the response, the per-connection state and its bound listeners): measured with a plain Node
 * server holding 16,000 streams, 4.6 KB of heap and 8.0 KB of resident memory per stream before,
 * 2.0 and 4.7 after.
 *
 * The response is then over as far as HTTP goes, and its caller emits its "close" (the request
 * log and the count of requests in flight see it end). The socket is the stream's from then on: it
 * is read (and what a client sends discarded) so that its end is seen, and it is destroyed on an
 * error or once the client has ended it.
 *
 * This relies on Node's server internals: the listeners it puts on a socket (found by their
 * names) and `_http_common`'s `freeParser`, as they are in Node 20. Where they are not found, the
 * connection is not taken over and the stream stays on the response, as before (a test names the
 * Node it was checked on).
 */
import * as Net from "node:net"
import { createRequire } from "node:module"
import type * as NodeHttp from "node:http"

interface HttpCommon {
  readonly freeParser: (parser: unknown, request: NodeHttp.IncomingMessage | null, socket: Net.Socket) => void
}

/** A server's socket as Node's HTTP server keeps it. */
interface ServerSocket extends Net.Socket {
  parser?: { finish?: () => unknown } | null
}

const httpCommon = ((): HttpCommon | undefined => {
  try {
    const loaded = createRequire(import.meta.url)("_http_common") as Partial<HttpCommon>
    return typeof loaded.freeParser === "function" ? loaded as HttpCommon : undefined
  } catch {
    return undefined
  }
})()

/** The listeners Node's HTTP server puts on each of its sockets, by event, as their functions are named. */
const serverListeners: ReadonlyArray<readonly [event: string, name: string]> = [
  ["data", "bound socketOnData"],
  ["end", "bound socketOnEnd"],
  ["close", "bound socketOnClose"],
  ["drain", "bound socketOnDrain"],
  ["error", "socketOnError"],
  ["timeout", "socketOnTimeout"],
  ["resume", "onSocketResume"],
  ["pause", "onSocketPause"]
]

/** On the client's end of the connection (it closes only its side) or an error. */
function destroy(this: Net.Socket) {
  this.destroy()
}

/**
 * Takes the connection of `response`, whose head has been sent, from Node's HTTP server, and
 * returns its socket; undefined (and nothing changed) where this Node's server does not look as
 * expected.
 */
export const takeOver = (request: NodeHttp.IncomingMessage, response: NodeHttp.ServerResponse): Net.Socket | undefined => {
  const socket = response.socket as ServerSocket | null
  if (httpCommon === undefined || socket === null || !response.headersSent || socket.parser == null) return undefined
  const found: Array<readonly [string, (...args: Array<unknown>) => void]> = []
  for (const [event, name] of serverListeners) {
    const listener = socket.listeners(event).find((candidate) => candidate.name === name)
    if (listener === undefined) return undefined
    found.push([event, listener as (...args: Array<unknown>) => void])
  }
  for (const [event, listener] of found) socket.removeListener(event, listener)
  const parser = socket.parser
  parser.finish?.()
  httpCommon.freeParser(parser, request, socket)
  response.detachSocket(socket)
  // With its parser gone, the server's wrappers of these give way to the socket's own.
  socket.on = Net.Socket.prototype.on
  socket.addListener = Net.Socket.prototype.addListener
  socket.prependListener = Net.Socket.prototype.prependListener
  socket.on("end", destroy)
  socket.on("error", destroy)
  socket.resume()
  return socket
}
