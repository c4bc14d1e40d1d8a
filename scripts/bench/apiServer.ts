/**
 * For api.ts (`npm run bench:api`): POST /messages served either by pollcast's HttpRouter route
 * (src/Http/Messages.ts), by the same with the request log in front (src/Http/RequestLog.ts, its
 * access line written at info as in production), or by HttpApiBuilder from the declaration
 * (src/Api.ts); each with the same request policy and a repo that stores nothing, so that only the
 * HTTP layer differs. Prints its port once it listens.
 */
import { HttpApi, HttpApiBuilder } from "@effect/platform"
import { NodeHttpServer, NodeHttpServerRequest, NodeRuntime } from "@effect/platform-node"
import { HttpServerRequest } from "@effect/platform"
import { ConfigProvider, Effect, Layer, LogLevel, Option, Stream } from "effect"
import * as NodeHttp from "node:http"
import * as Api from "../../src/Api.js"
import { AppConfig } from "../../src/Config.js"
import * as Messages from "../../src/Http/Messages.js"
import * as RequestLog from "../../src/Http/RequestLog.js"
import * as Logging from "../../src/Logging.js"
import * as RequestPolicy from "../../src/Access/RequestPolicy.js"
import { beginning, Message, messageId } from "../../src/Domain/Message.js"
import { MessageRepo } from "../../src/Storage/MessageRepo.js"

const mode = process.argv[2] === "builder" ? "builder" : process.argv[2] === "logged" ? "logged" : "router"

let sequence = 0
const repo = Layer.succeed(MessageRepo, MessageRepo.of({
  insert: (message) => Effect.sync(() => new Message({ ...message, id: messageId(1n, BigInt(++sequence)), createdAt: new Date() })),
  poll: () => Effect.succeed([]),
  head: Effect.die("unused"),
  newest: () => Effect.die("unused"),
  replay: () => Effect.succeed([]),
  history: () => Effect.die("unused"),
  retainedAfter: Effect.die("unused"),
  prune: () => Effect.succeed({ deleted: 0, young: 0, more: false }),
  ping: Effect.void,
  recreateTables: () => Effect.void,
  probe: Effect.succeed({ lastId: 0n, horizon: "0" }),
  position: Effect.succeed(beginning),
  announcer: "test",
  transactionCounter: Effect.succeed(2n ** 62n),
  committed: Stream.never,
  failingWrite: Effect.succeed(Option.none())
}))

const messagesOnly = HttpApi.make("bench").add(Api.messagesGroup(16_384))

const builderApp = Effect.gen(function*() {
  const policy = yield* RequestPolicy.RequestPolicy
  const store = yield* MessageRepo
  const handlers = HttpApiBuilder.group(messagesOnly, "messages", (handlers) =>
    handlers.handle("publish", ({ payload }) =>
      Effect.gen(function*() {
        const request = NodeHttpServerRequest.toIncomingMessage(yield* HttpServerRequest.HttpServerRequest)
        const publisher = yield* policy.publisher(request).pipe(Effect.orDie)
        const input = yield* policy.authorizePublish(publisher, {
          channel: payload.channel ?? ("general" as never),
          author: payload.author ?? "anonymous",
          body: payload.body
        }).pipe(Effect.orDie)
        return yield* store.insert(input).pipe(Effect.orDie)
      })).handle("history", () => Effect.die("unused")))
  // One Router for the API's layer (which registers the routes) and for httpApp (which reads them).
  return yield* HttpApiBuilder.httpApp.pipe(
    Effect.provide(
      Layer.merge(HttpApiBuilder.api(messagesOnly).pipe(Layer.provide(handlers)), HttpApiBuilder.Middleware.layer).pipe(
        Layer.provideMerge(HttpApiBuilder.Router.Live)
      )
    )
  )
})

const routerApp = Messages.routes

const main = Effect.gen(function*() {
  const app = yield* (mode === "builder" ? builderApp : routerApp)
  const handler = yield* NodeHttpServer.makeHandler(app)
  const record = yield* RequestLog.make
  const server = NodeHttp.createServer(
    mode === "logged"
      ? (request, response) => {
        record(request, response)
        handler(request, response)
      }
      : handler
  )
  server.keepAliveTimeout = 65_000
  yield* Effect.async<void>((resume) => {
    server.listen(0, "127.0.0.1", () => resume(Effect.void))
  })
  const address = server.address()
  console.log(`port ${typeof address === "object" && address !== null ? address.port : 0}`)
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.provide(RequestPolicy.layer),
  Effect.provide(repo),
  Effect.provide(AppConfig.layer.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["PUBLISH_RATE", "0"]])))))),
  Effect.provide(NodeHttpServer.layerContext),
  // As the service writes its lines when its output is not a terminal.
  Effect.provide(Logging.layer("logfmt", LogLevel.Info))
)

NodeRuntime.runMain(main, { disablePrettyLogger: true })
