/**
 * The service's layers wired together, over any SqlClient: main provides the real database and
 * the environment's settings; tests provide their own.
 */
import { Layer } from "effect"
import * as EventStream from "./EventStream.js"
import * as Http from "./Http.js"
import * as RequestPolicy from "./Http/RequestPolicy.js"
import * as MessageRepo from "./MessageRepo.js"
import * as Poller from "./Poller.js"

/** Everything but the HTTP server: the repo, the poller and its broadcast, the event streams. */
export const services = EventStream.layer.pipe(
  Layer.provideMerge(Poller.layer),
  Layer.provideMerge(MessageRepo.layer)
)

export const layer = Http.layer.pipe(Layer.provide(RequestPolicy.layer), Layer.provideMerge(services))

export type Services = Layer.Layer.Success<typeof services>
