/**
 * The fan-out alone, in process: one Broadcast (src/Delivery/Broadcast.ts) with `--clients` sinks that take
 * everything at once, fed `--batches` batches of `--messages` messages; prints the event loop's
 * time per batch. For comparing the fan-out between commits (copy this script and statistics.ts
 * into the other checkout's scripts/bench/), with nothing else on the machine competing: no HTTP,
 * no database, no clients' processes.
 *
 *     npm run bench:fanout -- [--clients 5000] [--batches 2000] [--messages 10] [--rounds 5]
 */
import { Array as Arr, Effect, Exit, Layer, Option, Scope } from "effect"
import * as Broadcast from "../../src/Delivery/Broadcast.js"
import { Selection } from "../../src/Domain/Channels.js"
import { beginning, Channel, Message, messageId } from "../../src/Domain/Message.js"
import { testConfig } from "../../test/support/TestConfig.js"
import { numberArgument } from "../support/arguments.js"
import { middleOf } from "./statistics.js"

const clients = numberArgument("clients", 5000)
const batches = numberArgument("batches", 2000)
const perBatch = numberArgument("messages", 10)
const rounds = numberArgument("rounds", 5)

let sequence = 0
const batch = () =>
  Arr.makeBy(perBatch, () =>
    new Message({
      id: messageId(1n, BigInt(++sequence)),
      channel: Channel.make("bench"),
      author: "fanout-bench",
      body: "x".repeat(100),
      createdAt: new Date()
    }))

const round = Effect.gen(function*() {
  const broadcast = yield* Broadcast.Broadcast
  let writes = 0
  const sink = {
    write: () => {
      writes++
    },
    backlog: () => 0,
    flushed: () => writes,
    cutOff: () => undefined,
    end: () => undefined
  }
  const scope = yield* Scope.make()
  const selection = Selection.of("all")
  for (let i = 0; i < clients; i++) {
    yield* broadcast.subscribe({ selection, after: Option.none(), sink }).pipe(Scope.extend(scope))
  }
  const fannedOut = (count: number) =>
    Effect.promise(() =>
      new Promise<void>((resolve) => {
        const check = () => (writes >= count ? resolve() : setImmediate(check))
        check()
      })
    )
  for (let i = 0; i < 100; i++) yield* broadcast.publish(batch())
  yield* fannedOut(100 * clients)
  const started = performance.now()
  const cpu = process.cpuUsage()
  for (let i = 0; i < batches; i++) yield* broadcast.publish(batch())
  yield* fannedOut((100 + batches) * clients)
  const used = process.cpuUsage(cpu)
  const elapsed = performance.now() - started
  yield* Scope.close(scope, Exit.void)
  return { microsecondsPerBatch: (elapsed * 1000) / batches, cpuMicrosecondsPerBatch: (used.user + used.system) / batches }
}).pipe(Effect.scoped, Effect.provide(Broadcast.layer(beginning).pipe(Layer.provide(testConfig({ HEARTBEAT_INTERVAL: "1 hour" })))))

const program = Effect.gen(function*() {
  const results: Array<number> = []
  const cpu: Array<number> = []
  for (let i = 1; i <= rounds; i++) {
    const { cpuMicrosecondsPerBatch, microsecondsPerBatch } = yield* round
    results.push(microsecondsPerBatch)
    cpu.push(cpuMicrosecondsPerBatch)
    console.log(
      `round ${i}: ${microsecondsPerBatch.toFixed(1)} µs per batch (${cpuMicrosecondsPerBatch.toFixed(1)} µs of CPU), ` +
        `${(microsecondsPerBatch / clients * 1000).toFixed(1)} ns per client per batch`
    )
  }
  console.log(
    `${clients} clients, ${perBatch} messages a batch: min ${Math.min(...results).toFixed(1)} µs, median ${
      middleOf(results).toFixed(1)
    } µs per batch; CPU min ${Math.min(...cpu).toFixed(1)} µs`
  )
})

Effect.runPromise(program)
