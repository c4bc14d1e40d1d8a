/**
 * The HTTP server: every route, JSON errors, and a shutdown that stops accepting connections, ends
 * the event streams, and gives in-flight requests SHUTDOWN_TIMEOUT to finish before cutting them.
 */
import { HttpMiddleware, HttpRouter, HttpServer } from "@effect/platform"
import { NodeFileSystem, NodeHttpServer } from "@effect/platform-node"
import { Deferred, Duration, Effect, Layer } from "effect"
import * as NodeHttp from "node:http"
import { AppConfig } from "./Config.js"
import { EventStream } from "./Delivery/EventStream.js"
import * as Connections from "./Http/Connections.js"
import * as Docs from "./Http/Docs.js"
import * as Events from "./Http/Events.js"
import * as Health from "./Http/Health.js"
import { internalError, NotFound, writeAnswer } from "./Http/HttpErrors.js"
import * as Messages from "./Http/Messages.js"
import * as Page from "./Http/Page.js"
import * as RequestLog from "./Http/RequestLog.js"
import { hasTokenInQuery, RequestPolicy } from "./Access/RequestPolicy.js"

/** Every route but `GET /events`. */
export const router = Effect.gen(function*() {
  return HttpRouter.concatAll(yield* Messages.routes, yield* Health.routes, yield* Page.routes, yield* Docs.routes)
})

export const app = Effect.gen(function*() {
  return (yield* router).pipe(
    // The path only: a query may hold a token.
    Effect.catchTag("RouteNotFound", (notFound) =>
      new NotFound({ message: `No route for ${notFound.request.method} ${notFound.request.url.split("?")[0]}` })),
    Effect.catchAllDefect((defect) =>
      Effect.logError("Request failed unexpectedly", defect).pipe(Effect.as(internalError)))
  )
})

/**
 * Every request goes to the HttpRouter app, but for `GET /events`, whose long-lived streams have a
 * handler of their own (see Http/Events.ts); the request log and the origin rules see both first. Registered before the
 * server listens: a request that arrived in between would find no handler and wait forever.
 */
const listen = (server: NodeHttp.Server) =>
  Effect.gen(function*() {
    const policy = yield* RequestPolicy
    yield* Connections.guard(server)
    // A URL with an access_token is not traced: a trace keeps the whole URL.
    const handleApp = yield* NodeHttpServer.makeHandler(yield* app).pipe(
      Effect.locally(HttpMiddleware.currentTracerDisabledWhen, (request) => hasTokenInQuery(request.url))
    )
    const handleEvents = yield* Events.handler
    const record = yield* RequestLog.make
    const dispatch = (request: NodeHttp.IncomingMessage, response: NodeHttp.ServerResponse) => {
      record(request, response)
      const screening = policy.screen(request)
      for (const name in screening.headers) response.setHeader(name, screening.headers[name]!)
      if (screening.answer !== undefined) return writeAnswer(response, screening.answer)
      return Events.handles(request) ? handleEvents(request, response) : handleApp(request, response)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => server.on("request", dispatch)),
      () => Effect.sync(() => server.off("request", dispatch))
    )
  })

/** Completes whenever no request is in flight on `server` (at once if none is). */
const requestsSettled = (server: NodeHttp.Server) => {
  let inFlight = 0
  const waiting = new Set<() => void>()
  server.on("request", (_request, response: NodeHttp.ServerResponse) => {
    inFlight++
    response.once("close", () => {
      inFlight--
      if (inFlight === 0) for (const wake of waiting) wake()
    })
  })
  return Effect.async<void>((resume) => {
    if (inFlight === 0) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    waiting.add(wake)
    return Effect.sync(() => waiting.delete(wake))
  })
}

/**
 * Once the server listens: a finalizer that runs first on shutdown, while requests are still
 * handled. The finalizer runs uninterruptibly, so each wait in it is made interruptible for its
 * timeout to be able to end it.
 */
const shutdownGracefully = (server: NodeHttp.Server, settled: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const eventStream = yield* EventStream
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const allClosed = yield* Deferred.make<void>()
        yield* Effect.sync(() => server.close(() => Deferred.unsafeDone(allClosed, Effect.void)))
        yield* Effect.logInfo("Shutting down: refusing new connections, ending event streams")
        yield* eventStream.drain
        const finished = yield* settled.pipe(
          Effect.interruptible,
          Effect.timeoutTo({ duration: config.shutdownTimeout, onSuccess: () => true, onTimeout: () => false })
        )
        if (!finished) {
          yield* Effect.logWarning("Requests still open after SHUTDOWN_TIMEOUT; closing their connections")
        }
        // Whatever is left carries no request: idle keep-alive connections, and connections
        // that clients opened ahead of a request they never sent.
        server.closeAllConnections()
        yield* Deferred.await(allClosed).pipe(
          Effect.interruptible,
          Effect.timeoutTo({
            duration: "1 second",
            onSuccess: () => Effect.void,
            onTimeout: () => Effect.logWarning("Some connections were still open after being closed; going on")
          }),
          Effect.flatten
        )
      })
    )
    yield* HttpServer.logAddress
  })

/** Built in this order: request handlers, then the listening server, then the graceful shutdown. */
export const layer = Layer.unwrapEffect(
  Effect.gen(function*() {
    const config = yield* AppConfig
    // An idle keep-alive connection is closed by the server only after KEEP_ALIVE_TIMEOUT (Node
    // advertises it in a Keep-Alive header). Node's 5 s default races clients and proxies that
    // reuse a connection just as it closes (ECONNRESET); proxies and load balancers expect the
    // server to wait longer than they do (60 s is common), and the headers timeout to be longer still.
    const keepAlive = Duration.toMillis(config.keepAliveTimeout)
    const server = NodeHttp.createServer()
    server.keepAliveTimeout = keepAlive
    server.headersTimeout = keepAlive + 1000
    const settled = requestsSettled(server)
    return Layer.scopedDiscard(shutdownGracefully(server, settled)).pipe(
      // A long accept queue: after a restart every client reconnects within SSE_RETRY.
      Layer.provideMerge(NodeHttpServer.layer(() => server, { port: config.port, host: config.host, backlog: 4096 })),
      // The page's routes read their assets at start-up, before the server (and its platform) exists.
      Layer.provide(Layer.scopedDiscard(listen(server)).pipe(Layer.provide(NodeFileSystem.layer)))
    )
  })
)
