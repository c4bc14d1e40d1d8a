/**
 * The service's layers wired together, over a PgClient: main provides the real database and the
 * environment's settings; tests provide their own.
 */
import { Layer } from "effect"
import * as Admission from "./Access/Admission.js"
import * as NodeStatus from "./Cluster/NodeStatus.js"
import * as EventStream from "./Delivery/EventStream.js"
import * as Http from "./Http.js"
import * as RequestPolicy from "./Access/RequestPolicy.js"
import * as MessageRepo from "./Storage/MessageRepo.js"
import * as Poller from "./Delivery/Poller.js"
import * as Retention from "./Storage/Retention.js"
import * as Telemetry from "./Telemetry.js"
import * as Wakeups from "./Delivery/Wakeups.js"

/** Everything but the HTTP server: the repo, the wake-ups, the poller and its broadcast, the event streams, retention. */
export const services = Layer.merge(EventStream.layer, Retention.layer).pipe(
  Layer.provideMerge(Poller.layer),
  Layer.provideMerge(Wakeups.layer.pipe(Layer.provideMerge(MessageRepo.layer)))
)

// Telemetry first, so that the tracer it may install is there for every fiber the others start.
export const layer = Http.layer.pipe(
  Layer.provide(RequestPolicy.layer.pipe(Layer.provide(Admission.layer))),
  Layer.provide(NodeStatus.local),
  Layer.provideMerge(services),
  Layer.provideMerge(Telemetry.layer)
)

export type Services = Layer.Layer.Success<typeof services>
