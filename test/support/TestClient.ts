/** pollcast's own typed client (src/client/) on a test node, over fetch. */
import { FetchHttpClient } from "@effect/platform"
import { Effect } from "effect"
import * as PollcastClient from "../../src/client/PollcastClient.js"
import type { TestNode } from "./TestNode.js"

export const of = (node: TestNode, options: Omit<PollcastClient.ClientOptions, "baseUrl"> = {}) =>
  PollcastClient.make({ baseUrl: node.url(""), ...options }).pipe(Effect.provide(FetchHttpClient.layer))
