/**
 * The HTTP server: every route, JSON errors, and a shutdown that stops accepting connections, ends
 * the event streams, and gives in-flight requests and ending streams SHUTDOWN_TIMEOUT to finish
 * before cutting them.
 */
import { HttpApiBuilder, HttpApiError, HttpMiddleware, HttpServer, HttpServerError } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Deferred, Duration, Effect, Layer, type Scope } from "effect"
import * as NodeHttp from "node:http"
import type * as Net from "node:net"
import { AppConfig } from "./Config.js"
import { EventStream } from "./Delivery/EventStream.js"
import * as Connections from "./Http/Connections.js"
import * as Docs from "./Http/Docs.js"
import * as Events from "./Http/Events.js"
import * as Health from "./Http/Health.js"
import { InFlight } from "./Http/InFlight.js"
import * as Answer from "./Http/Answer.js"
import * as Messages from "./Http/Messages.js"
import * as Page from "./Http/Page.js"
import * as RequestLog from "./Http/RequestLog.js"
import * as Api from "./Api.js"
import { RequestPolicy } from "./Access/RequestPolicy.js"
import { InvalidRequest, isHttpError, NotFound } from "./Domain/Errors.js"
import * as Request from "./Http/Request.js"
import { hasTokenInQuery, pathOf } from "./Http/Request.js"

/** How the router answers a failure: the declared answer of an API error, of a malformed request, of no route. */
const answerFailure = (error: unknown) => {
  if (isHttpError(error)) return Effect.succeed(Answer.toResponse(Answer.answerOf(error)))
  if (error instanceof HttpApiError.HttpApiDecodeError) {
    return Effect.succeed(Answer.toResponse(Answer.answerOf(InvalidRequest.fromIssues(error.issues, "The query", error.message))))
  }
  if (HttpServerError.isServerError(error) && error._tag === "RouteNotFound") {
    // The path only: a query may hold a token.
    const message = `No route for ${error.request.method} ${pathOf(error.request.url)}`
    return Effect.succeed(Answer.toResponse(Answer.answerOf(new NotFound({ message }))))
  }
  // Another declared failure (readiness's 503 body): the builder answers it as declared.
  return Effect.fail(error)
}

const answered = HttpMiddleware.make((app) =>
  app.pipe(
    Effect.catchAll(answerFailure),
    Effect.catchAllDefect((defect) =>
      Effect.logError("Request failed unexpectedly", defect).pipe(Effect.as(Answer.toResponse(Answer.internalError))))
  )
)

/**
 * The router: the API's endpoints served from their declaration, the page and the API's
 * description, failures answered as declared.
 */
const routerLayer = Layer.unwrapEffect(Effect.map(AppConfig, (config) => {
  const api = Api.routed(config.maxBodyBytes)
  return Layer.mergeAll(
    HttpApiBuilder.api(api).pipe(Layer.provide([Messages.group(api), Health.group(api)])),
    HttpApiBuilder.Router.use((router) => Effect.flatMap(Page.routes, router.concat)),
    HttpApiBuilder.Router.use((router) => Effect.flatMap(Docs.routes, router.concat)),
    Layer.effectDiscard(Effect.flatMap(HttpApiBuilder.Middleware, (middleware) => middleware.add(answered)))
  ).pipe(
    Layer.provideMerge(HttpApiBuilder.Router.Live),
    Layer.provideMerge(HttpApiBuilder.Middleware.layer),
    // The page's routes read their assets at start-up, before the server (and its platform) exists.
    Layer.provideMerge(NodeHttpServer.layerContext)
  )
}))

/** The routes served, as "METHOD /path": the router's, and the event streams' beside it. */
export const servedRoutes = Effect.map(HttpApiBuilder.Router.router, (router) => [
  ...[...router.routes].map((route) => `${route.method} ${route.path}`),
  `${Api.eventsEndpoint.method} ${Api.eventsEndpoint.path}`
]).pipe(Effect.provide(routerLayer))

/**
 * Every request is parsed once (Request.ts), recorded (RequestLog.ts) and screened by the origin
 * rules, then goes to the router, but for `GET /events`, whose long-lived streams have a handler of
 * their own (see Http/Events.ts). Registered before the server listens: a request that arrived in
 * between would find no handler and wait forever.
 */
const listen = (server: NodeHttp.Server, streams: InFlight<Net.Socket>) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const policy = yield* RequestPolicy
    const parse = yield* Request.parser
    yield* Connections.guard(server)
    // A URL with an access_token is not traced: a trace keeps the whole URL.
    const handleApp = yield* NodeHttpServer.makeHandler(yield* HttpApiBuilder.httpApp).pipe(
      Effect.locally(HttpMiddleware.currentTracerDisabledWhen, (request) => hasTokenInQuery(request.url))
    )
    const handleEvents = yield* Events.handler(streams)
    const api = Api.make(config.maxBodyBytes)
    const crossOrigin = Api.crossOriginRoutes(api)
    const record = yield* RequestLog.make([...Api.paths(api), ...Page.paths, ...Docs.paths])
    const dispatch = (request: NodeHttp.IncomingMessage, response: NodeHttp.ServerResponse) => {
      const parts = parse(request.method ?? "GET", request.url ?? "/", request.headers, request.socket.remoteAddress)
      record(parts, response)
      const screening = policy.screen(parts, crossOrigin.get(parts.path))
      switch (screening._tag) {
        case "Refused":
          return Answer.write(response, Answer.answerOf(screening.error))
        case "Preflight":
          return Answer.write(response, { status: 204, headers: screening.headers, body: undefined })
      }
      for (const name in screening.headers) response.setHeader(name, screening.headers[name]!)
      if (Events.handles(parts)) return handleEvents(parts, request, response)
      Request.remember(request, parts)
      return handleApp(request, response)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => server.on("request", dispatch)),
      () => Effect.sync(() => server.off("request", dispatch))
    )
  })

/** Counts the requests of `server` in flight, each from its arrival until its response closes. */
const countRequests = (server: NodeHttp.Server, requests: InFlight<NodeHttp.ServerResponse>) => {
  function left(this: NodeHttp.ServerResponse) {
    requests.leave(this)
  }
  server.on("request", (_request, response: NodeHttp.ServerResponse) => {
    requests.enter(response)
    response.on("close", left)
  })
}

/**
 * Once the server listens: a finalizer that runs first on shutdown, while requests are still
 * handled. The finalizer runs uninterruptibly, so each wait in it is made interruptible for its
 * timeout to be able to end it.
 */
const shutdownGracefully = (
  server: NodeHttp.Server,
  requests: InFlight<NodeHttp.ServerResponse>,
  streams: InFlight<Net.Socket>,
  announce: boolean
) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const eventStream = yield* EventStream
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const allClosed = yield* Deferred.make<void>()
        yield* Effect.sync(() => server.close(() => Deferred.unsafeDone(allClosed, Effect.void)))
        yield* Effect.logInfo("Shutting down: refusing new connections, ending event streams")
        yield* eventStream.drain
        const finished = yield* Effect.zip(requests.settled, streams.settled, { concurrent: true }).pipe(
          Effect.interruptible,
          Effect.timeoutTo({ duration: config.shutdownTimeout, onSuccess: () => true, onTimeout: () => false })
        )
        if (!finished) {
          yield* Effect.logWarning("Requests still open after SHUTDOWN_TIMEOUT; closing their connections")
        }
        // Whatever is left carries no request: idle keep-alive connections, and connections
        // that clients opened ahead of a request they never sent. And streams whose clients
        // have not taken their last bytes.
        server.closeAllConnections()
        for (const socket of streams.values()) socket.destroy()
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
    if (announce) yield* HttpServer.logAddress
  })

/**
 * Where a server's connections come from: the port it listens on (and says so), or, in a worker
 * of a node, its primary, which hands it each connection (`receive` installs what takes them, and
 * the server listens only on a private address of its own, unannounced).
 */
export type ConnectionSource =
  | { readonly _tag: "Port" }
  | { readonly _tag: "Handed"; readonly receive: (server: NodeHttp.Server) => Effect.Effect<void, never, Scope.Scope> }

/** Built in this order: request handlers, then the listening server, then the graceful shutdown. */
export const layerWith = (connections: ConnectionSource) =>
  Layer.unwrapEffect(
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
      const requests = new InFlight<NodeHttp.ServerResponse>()
      const streams = new InFlight<Net.Socket>()
      countRequests(server, requests)
      const listening = connections._tag === "Port"
        ? { port: config.port, host: config.host, backlog: 4096 }
        // Its own (exclusive), not the node's shared port: nothing connects to it.
        : { port: 0, host: "127.0.0.1", exclusive: true }
      return Layer.scopedDiscard(shutdownGracefully(server, requests, streams, connections._tag === "Port")).pipe(
        // A long accept queue: after a restart every client reconnects within SSE_RETRY.
        Layer.provideMerge(NodeHttpServer.layer(() => server, listening)),
        Layer.provide(Layer.scopedDiscard(
          Effect.zipRight(listen(server, streams), connections._tag === "Handed" ? connections.receive(server) : Effect.void)
        ).pipe(Layer.provide(routerLayer)))
      )
    })
  )

export const layer = layerWith({ _tag: "Port" })
