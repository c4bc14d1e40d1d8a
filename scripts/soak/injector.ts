/**
 * Carries out the fault plan against the running soak: each fault at its time, concurrently with
 * the others, except that two faults never hold the same node, the same database link, the
 * database or the same subscriber at once (a later one waits). Each fault is recorded in the
 * history with when it really began and ended.
 */
import { Duration, Effect, Option, Schedule } from "effect"
import type { SoakDatabase, SoakNode } from "./cluster.js"
import type { HistoryWriter } from "./history.js"
import type { PlannedFault } from "./plan.js"
import { maxInFlight, type Publisher } from "./publisher.js"
import type { SqlWriter } from "./sqlWriter.js"
import type { Subscriber } from "./subscriber.js"
import type { TcpProxy } from "../support/TcpProxy.js"

export interface Soak {
  readonly now: () => number
  readonly history: HistoryWriter
  readonly nodes: ReadonlyArray<SoakNode>
  readonly database: SoakDatabase
  /** The plain-SQL writer's link to the database. */
  readonly sqlProxy: TcpProxy
  readonly publisher: Publisher
  readonly sqlWriter: SqlWriter
  readonly channels: ReadonlyArray<string>
  readonly subscribers: ReadonlyArray<Subscriber>
  readonly addSubscriber: (options: { readonly channels: "all" | ReadonlyArray<string>; readonly from: string; readonly fromInQuery: boolean }) => Subscriber
  readonly anomaly: (severity: "error" | "warning", what: string) => void
  readonly log: (text: string) => void
  readonly shutdownTimeoutMillis: number
}

/** The id every message comes after. */
const beginning = "0000000000000000-0000000000000000"

const seconds = (millis: number) => `${(millis / 1000).toFixed(1)} s`

/** Completes with true once `condition` holds (checked every 100 ms), or with false after `within`. */
export const waitFor = (condition: () => boolean, within: Duration.DurationInput) =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail("not yet"))).pipe(
    Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo(within))),
    Effect.as(true),
    Effect.orElseSucceed(() => false)
  )

interface Done {
  readonly target: string
  readonly start: number
  /** When it ended, if not when its execution did. */
  readonly end?: number
  readonly detail?: string
  readonly subscriber?: number
}

export const inject = (soak: Soak, faults: ReadonlyArray<PlannedFault>) =>
  Effect.gen(function*() {
    const nodeLocks = yield* Effect.forEach(soak.nodes, () => Effect.makeSemaphore(1))
    // One per node's link, and the SQL writer's last.
    const linkLocks = yield* Effect.forEach([...soak.nodes, undefined], () => Effect.makeSemaphore(1))
    const databaseLock = yield* Effect.makeSemaphore(1)
    const subscriberLocks = new Map<number, Effect.Semaphore>()
    const active = new Set<string>()

    const whenUp = (node: SoakNode) => waitFor(() => node.state === "up", "2 minutes")

    const withLinks = <A, E>(target: number | "all", effect: Effect.Effect<A, E>) =>
      (target === "all" ? linkLocks : [linkLocks[target]!]).reduceRight(
        (inner, lock) => lock.withPermits(1)(inner),
        effect
      )

    const restart = (node: SoakNode) =>
      node.start.pipe(Effect.catchAll((error) => Effect.sync(() => soak.anomaly("error", error.message))))

    const execute = (fault: PlannedFault): Effect.Effect<Done> => {
      const duration = Duration.millis(fault.duration)
      switch (fault.kind) {
        case "node-kill":
        case "node-term": {
          const node = soak.nodes[fault.node as number]!
          return nodeLocks[node.index]!.withPermits(1)(Effect.gen(function*() {
            yield* whenUp(node)
            const start = soak.now()
            const signal = fault.kind === "node-kill" ? "SIGKILL" : "SIGTERM"
            const stopped = yield* node.stop(signal)
            let detail = stopped === undefined ? "was not running" : `${stopped.description} after ${seconds(stopped.millis)}`
            if (signal === "SIGTERM" && stopped !== undefined) {
              if (stopped.description !== "exit code 0") {
                soak.anomaly("error", `node ${node.index} did not exit cleanly on SIGTERM: ${stopped.description}`)
              } else if (stopped.millis > soak.shutdownTimeoutMillis + 2000) {
                soak.anomaly("warning", `node ${node.index} took ${seconds(stopped.millis)} to shut down on SIGTERM`)
              }
            }
            yield* Effect.sleep(duration)
            yield* restart(node)
            detail += `; up again after ${seconds(soak.now() - start)}`
            return { target: `node ${node.index}`, start, detail }
          }))
        }
        case "node-freeze": {
          const node = soak.nodes[fault.node as number]!
          return nodeLocks[node.index]!.withPermits(1)(Effect.gen(function*() {
            yield* whenUp(node)
            const start = soak.now()
            if (!node.freeze()) return { target: `node ${node.index}`, start, detail: "was not running" }
            yield* Effect.sleep(duration).pipe(Effect.ensuring(Effect.sync(() => node.thaw())))
            return { target: `node ${node.index}`, start }
          }))
        }
        case "db-cut":
        case "db-stall": {
          const target = fault.node ?? "all"
          const proxies = target === "all" ? [...soak.nodes.map((node) => node.proxy), soak.sqlProxy] : [soak.nodes[target]!.proxy]
          return withLinks(target, Effect.gen(function*() {
            const start = soak.now()
            yield* Effect.forEach(proxies, (proxy) => fault.kind === "db-cut" ? proxy.cut : proxy.stall)
            yield* Effect.sleep(duration).pipe(
              Effect.ensuring(Effect.forEach(proxies, (proxy) => fault.endsCut === true ? Effect.zipRight(proxy.cut, proxy.restore) : proxy.restore))
            )
            return {
              target: target === "all" ? "all links" : `node ${target}'s link`,
              start,
              ...(fault.kind === "db-stall" ? { detail: fault.endsCut === true ? "then cut" : "then let through" } : {})
            }
          }))
        }
        case "db-restart":
          return databaseLock.withPermits(1)(Effect.gen(function*() {
            const start = soak.now()
            const restarted = yield* soak.database.restart(duration).pipe(Effect.either)
            if (restarted._tag === "Left") soak.anomaly("error", `the database did not restart: ${restarted.left.message}`)
            return { target: "postgres", start, detail: `back after ${seconds(soak.now() - start)}` }
          }))
        case "reader-stop": {
          const subscriber = soak.subscribers[fault.subscriber ?? 0]!
          let lock = subscriberLocks.get(subscriber.s)
          if (lock === undefined) {
            lock = Effect.unsafeMakeSemaphore(1)
            subscriberLocks.set(subscriber.s, lock)
          }
          return lock.withPermits(1)(Effect.gen(function*() {
            const start = soak.now()
            const drops = subscriber.drops
            const node = soak.nodes[subscriber.node]!
            const before = node.cutOffs()
            subscriber.pause()
            // Until its node cuts it off (or goes down), for at most the planned time.
            yield* waitFor(() => {
              const now = node.cutOffs()
              return now.pid !== before.pid || now.count > before.count
            }, duration).pipe(Effect.ensuring(Effect.sync(() => subscriber.resume())))
            const end = soak.now()
            const after = node.cutOffs()
            // The cut shows once the subscriber reads again: it reads what was sent, then the end.
            yield* waitFor(() => subscriber.drops > drops, "20 seconds")
            const what = after.pid !== before.pid
              ? "its node went down meanwhile"
              : after.count > before.count
              ? "cut off by its node"
              : "not cut off"
            return {
              target: `subscriber ${subscriber.s}`,
              subscriber: subscriber.s,
              start,
              end,
              detail: `on node ${node.index}: ${what}${subscriber.drops > drops ? ", then resumed" : ""}`
            }
          }))
        }
        case "burst":
          return Effect.gen(function*() {
            const start = soak.now()
            const before = soak.publisher.sent
            const skipped = soak.publisher.skipped
            const after = yield* soak.publisher.burst(2000, duration)
            const over = soak.publisher.skipped - skipped
            return {
              target: "publishers",
              start,
              detail: `${after - before} messages sent in ${seconds(fault.duration)}${
                over === 0 ? "" : ` (${over} more skipped: ${maxInFlight} requests in flight)`
              }`
            }
          })
        case "resume-old":
          return Effect.gen(function*() {
            const start = soak.now()
            const acknowledged = soak.publisher.acknowledged
            const back = start * (fault.age ?? 0.25)
            const from = [...acknowledged].reverse().find((entry) => entry.at <= back)?.id ?? acknowledged[0]?.id ?? beginning
            const head = acknowledged[acknowledged.length - 1]?.id ?? beginning
            const channels = fault.channels === "all" || fault.channels === undefined
              ? "all" as const
              : Array.from({ length: fault.channels }, (_, i) => soak.channels[(fault.index + i) % soak.channels.length]!)
            const subscriber = soak.addSubscriber({ channels, from, fromInQuery: fault.index % 2 === 0 })
            const caughtUp = yield* waitFor(() => subscriber.lastId !== undefined && subscriber.lastId > head, "1 minute")
            return {
              target: `subscriber ${subscriber.s}`,
              start,
              detail: `${channels === "all" ? "all channels" : channels.join(",")} from ${from}${
                caughtUp ? `, caught up in ${seconds(soak.now() - start)}` : ", not caught up within a minute"
              }`
            }
          })
        case "long-transaction":
          return Effect.gen(function*() {
            const asked = soak.now()
            const held = yield* soak.sqlWriter.holdNext(duration)
            return Option.match(held, {
              onNone: () => ({ target: "sql writer", start: asked, detail: "no transaction could be held" }),
              onSome: ({ detail, end, start }) => ({ target: "sql writer", start, end, detail })
            })
          })
      }
    }

    const run = (fault: PlannedFault) =>
      Effect.gen(function*() {
        yield* Effect.sleep(Duration.millis(Math.max(0, fault.at - soak.now())))
        const label = `${fault.kind}#${fault.index}`
        active.add(label)
        soak.log(`fault ${label} begins${typeof fault.node === "number" ? ` on node ${fault.node}` : ""}`)
        const done = yield* execute(fault).pipe(Effect.ensuring(Effect.sync(() => active.delete(label))))
        const end = done.end ?? soak.now()
        soak.history.write({
          _tag: "fault",
          n: fault.index,
          kind: fault.kind,
          target: done.target,
          start: done.start,
          end,
          ...(done.detail === undefined ? {} : { detail: done.detail }),
          ...(done.subscriber === undefined ? {} : { s: done.subscriber })
        })
        soak.log(`fault ${label} on ${done.target} ended after ${seconds(end - done.start)}${done.detail === undefined ? "" : `: ${done.detail}`}`)
      })

    return {
      active: () => [...active],
      run: Effect.forEach(faults, run, { concurrency: "unbounded", discard: true })
    }
  })
