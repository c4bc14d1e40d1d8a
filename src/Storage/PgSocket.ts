/**
 * The sockets the pool connects to PostgreSQL with, which notice a stalled network.
 *
 * A link that stops delivering bytes without closing (a partition, a frozen proxy) would leave a
 * query waiting forever: TCP keepalive takes minutes and never fires while a proxy answers, and
 * neither `pg` nor `@effect/sql-pg` bounds a query's time (interrupting one sends a cancel over
 * another connection, then hands the stuck one back to the pool). So a socket that has sent a
 * request and then hears nothing for DATABASE_TIMEOUT destroys itself: the query fails like any
 * lost connection (a POST answers 503, the poller retries), the pool drops it, and PostgreSQL ends
 * the session and any transaction of it once the link carries the close.
 *
 * A request is answered when the server's bytes end with ReadyForQuery (`Z`, length 5, status),
 * which closes every response of the protocol; bytes arriving in between restart the wait.
 * Once the server accepts TLS (`S` to the SSLRequest), the socket only carries ciphertext it cannot
 * read, and is no longer watched.
 */
import * as Net from "node:net"

/** The last message of every response: ReadyForQuery, `Z`, int32 length 5, status I, T or E. */
const readyForQuery = (chunk: Buffer) => {
  const at = chunk.length - 6
  return at >= 0 && chunk[at] === 0x5a && chunk.readInt32BE(at + 1) === 5 &&
    (chunk[at + 5] === 0x49 || chunk[at + 5] === 0x54 || chunk[at + 5] === 0x45)
}

/** A factory of sockets (for the pool's `stream` option) that close themselves after `timeoutMillis` of silence. */
export const watched = (timeoutMillis: number) => (): Net.Socket => {
  const socket = new Net.Socket()
  let timer: ReturnType<typeof setTimeout> | undefined
  let watching = true
  const stalled = () =>
    socket.destroy(new Error(`PostgreSQL sent nothing for ${timeoutMillis} ms after a request (DATABASE_TIMEOUT)`))
  const waitForAnswer = () => {
    clearTimeout(timer)
    timer = setTimeout(stalled, timeoutMillis)
  }
  // Every byte sent goes through _write or _writev (socket.write itself is reset by connect()).
  const request = () => {
    if (watching && timer === undefined) waitForAnswer()
  }
  const write = socket._write.bind(socket)
  socket._write = (chunk, encoding, callback) => {
    request()
    write(chunk, encoding, callback)
  }
  const writev = socket._writev?.bind(socket)
  if (writev !== undefined) {
    socket._writev = (chunks, callback) => {
      request()
      writev(chunks, callback)
    }
  }
  socket.on("data", (chunk: Buffer) => {
    if (timer === undefined) return // a notification, while idle
    if (chunk.length === 1 && chunk[0] === 0x53) {
      watching = false
      clearTimeout(timer)
      timer = undefined
    } else if (readyForQuery(chunk)) {
      clearTimeout(timer)
      timer = undefined
    } else {
      waitForAnswer()
    }
  })
  socket.once("close", () => clearTimeout(timer))
  return socket
}
