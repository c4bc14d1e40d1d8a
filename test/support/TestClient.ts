/** pollcast's own typed client (src/client/) on a test node, over fetch. */
import { FetchHttpClient } from "@effect/platform"
import { Effect } from "effect"
import * as PollcastClient from "../../src/client/PollcastClient.js"
import type { TestNode } from "./TestNode.js"

export const of = (node: TestNode, options: Omit<PollcastClient.ClientOptions, "baseUrl"> = {}) =>
  PollcastClient.make({ baseUrl: node.url(""), ...options }).pipe(Effect.provide(FetchHttpClient.layer))

/** Publishes through the typed client, which decodes the stored message the node answers; anything but 201 fails the test. */
export const publish = (node: TestNode, message: { readonly channel: string; readonly body: string; readonly author?: string }) =>
  Effect.flatMap(of(node), (client) => client.publish(message)).pipe(Effect.orDie)
