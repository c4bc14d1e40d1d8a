/**
 * Tabs of one browser share one event stream: the typed client's counterpart of the page's (see
 * src/web/app.js, whose design this follows). Over HTTP/1.1 a browser opens at most six
 * connections to an origin, across all its tabs; a stream per `events` call in every tab would
 * take them all, and the tabs' other requests would wait for ever.
 *
 * One tab per origin and token (a Web Lock) holds a stream of the union of the channels every
 * subscription of every tab wants, and passes what it receives to the others (a BroadcastChannel).
 * Each subscription yields only its own channels, and never a message at or before one it has
 * yielded. Messages on the bus:
 * - `want` {sub, channels, after, refill}: a subscription follows `channels` (none: all) and has
 *   everything up to `after`; sent when it starts and every few seconds; `refill` after a freeze,
 *   when messages passed on meanwhile may not have reached it;
 * - `gone` {sub}; `hello`: a new leader asks every tab to say what it wants;
 * - `message` {id, message}, `reset` {reset}, `refused` {status, body}: what the leader's stream got.
 *
 * The leader opens its stream again when the union changes, or when a subscription needs messages
 * from before where the stream began (replaying is harmless: subscriptions skip what they have);
 * a new leader goes on from the newest id passed on. Where Web Locks or BroadcastChannel are
 * missing (or outside a browser), each subscription keeps its own stream.
 */
import { Effect, Fiber, Runtime, Schema, Stream } from "effect"
import { Message } from "../Domain/Message.js"
import { Wants } from "../web/wants.js"

interface LockManager {
  readonly request: (name: string, callback: () => Promise<unknown>) => Promise<unknown>
}

const lockManager = (): LockManager | undefined =>
  (globalThis as { readonly navigator?: { readonly locks?: LockManager } }).navigator?.locks

/** Whether this runtime can share a stream between tabs. */
export const available = () => typeof BroadcastChannel === "function" && lockManager() !== undefined

/** What the leader's stream is opened with, and tells of. */
export interface Direct<E> {
  readonly open: (
    channels: ReadonlyArray<string>,
    lastEventId: string | undefined,
    onReset: (reset: unknown) => Effect.Effect<void>
  ) => Stream.Stream<Message, E>
  /** A refusal's status and body, to end every tab's subscriptions alike. */
  readonly refusal: (error: E) => { readonly status: number; readonly body: string } | undefined
}

interface Want {
  readonly channels: ReadonlyArray<string>
  readonly after: string
}

interface Subscription {
  readonly channels: ReadonlySet<string> | undefined
  after: string
  readonly deliver: (message: Message) => void
  readonly reset: (reset: unknown) => void
  readonly refused: (status: number, body: string) => void
}

type BusMessage =
  | { readonly type: "want"; readonly sub: string; readonly channels: ReadonlyArray<string>; readonly after: string; readonly refill: boolean }
  | { readonly type: "gone"; readonly sub: string }
  | { readonly type: "hello" }
  | { readonly type: "message"; readonly id: string; readonly message: unknown }
  | { readonly type: "reset"; readonly reset: { readonly lastEventId: string } }
  | { readonly type: "refused"; readonly status: number; readonly body: string }

const encode = Schema.encodeSync(Message)
const decode = Schema.decodeUnknownSync(Message)
const heartbeat = 4000
const forgetAfter = 15_000
const randomId = () => Math.random().toString(36).slice(2) + Date.now().toString(36)

/** A hub for the tabs of one origin and token group; `group` names them (a hash of the token). */
export const make = <E>(group: string, direct: Direct<E>): TabHub<E> => {
  const name = `pollcast.client.${group}`
  const bus = new BroadcastChannel(name)
  const local = new Map<string, Subscription>()
  const wants = new Wants<Want>(forgetAfter, () => followWants())
  let position = ""
  let leader = false
  let release: (() => void) | undefined
  let queued = false
  /** The leader's stream: its channels ([] for all), where it began, and how to stop it. */
  let stream: { readonly key: string; readonly from: string; readonly stop: () => void } | undefined
  const runtime = Runtime.defaultRuntime

  const post = (message: BusMessage) => bus.postMessage(message)

  const deliver = (id: string, message: Message) => {
    if (id > position) position = id
    for (const subscription of local.values()) {
      if (id <= subscription.after) continue
      if (subscription.channels !== undefined && !subscription.channels.has(message.channel)) continue
      subscription.after = id
      subscription.deliver(message)
    }
  }

  const onBus = (message: BusMessage) => {
    switch (message.type) {
      case "message":
        return deliver(message.id, decode(message.message))
      case "reset":
        if (message.reset.lastEventId > position) position = message.reset.lastEventId
        for (const subscription of local.values()) {
          subscription.after = message.reset.lastEventId
          subscription.reset(message.reset)
        }
        return
      case "refused":
        for (const subscription of local.values()) subscription.refused(message.status, message.body)
        return
      case "hello":
        return announceAll(false)
      case "want":
        if (message.refill) refills.add(message.sub)
        return wants.hear(message.sub, { channels: message.channels, after: message.after })
      case "gone":
        return wants.drop(message.sub)
    }
  }
  bus.onmessage = (event) => onBus((event as { readonly data: BusMessage }).data)

  /** Subscriptions that asked for what they may have missed. */
  const refills = new Set<string>()

  const want = (sub: string, refill: boolean): BusMessage | undefined => {
    const subscription = local.get(sub)
    if (subscription === undefined) return undefined
    const channels = subscription.channels === undefined ? [] : [...subscription.channels].sort()
    return { type: "want", sub, channels, after: subscription.after, refill }
  }

  const announceAll = (refill: boolean) => {
    for (const sub of local.keys()) {
      const message = want(sub, refill)
      if (message === undefined) continue
      if (leader) onBus(message)
      else post(message)
    }
  }

  /** Opens the stream again when the channels wanted are not those followed, or one needs an earlier start. */
  const followWants = () => {
    if (!leader) return
    const current = wants.current((sub) => local.has(sub))
    const all = [...current.values()].some((wanted) => wanted.channels.length === 0)
    const channels = all ? [] : [...new Set([...current.values()].flatMap((wanted) => wanted.channels))].sort()
    const key = all ? "*" : channels.join(",")
    // A subscription needs an earlier start than the stream's when it has messages up to a point
    // before where the stream began (or the stream began "now", which says nothing), or asks.
    const needs = (sub: string, wanted: Want) =>
      wanted.after !== "" && (stream === undefined || stream.from === "" || wanted.after < stream.from || refills.has(sub))
    const needing = [...current].filter(([sub, wanted]) => needs(sub, wanted))
    refills.clear()
    if (stream !== undefined && stream.key === key && needing.length === 0) return
    stream?.stop()
    stream = undefined
    if (current.size === 0) return
    // From the newest id passed on, or earlier where a subscription needs it: replaying what a
    // subscription has is harmless, it skips those ids.
    const from = needing.reduce((min, [, wanted]) => (min === "" || wanted.after < min ? wanted.after : min), position)
    open(channels, key, from)
  }

  const open = (channels: ReadonlyArray<string>, key: string, from: string) => {
    const relayReset = (reset: unknown) =>
      Effect.sync(() => {
        const message: BusMessage = { type: "reset", reset: reset as { readonly lastEventId: string } }
        post(message)
        onBus(message)
      })
    const fiber = Runtime.runFork(runtime)(
      direct.open(channels, from === "" ? undefined : from, relayReset).pipe(
        Stream.runForEach((message) =>
          Effect.sync(() => {
            post({ type: "message", id: message.id, message: encode(message) })
            deliver(message.id, message)
          })
        ),
        Effect.catchAll((error) =>
          Effect.sync(() => {
            const refusal = direct.refusal(error)
            if (refusal === undefined) return
            const message: BusMessage = { type: "refused", ...refusal }
            post(message)
            onBus(message)
          })
        )
      )
    )
    stream = { key, from, stop: () => void Runtime.runFork(runtime)(Fiber.interrupt(fiber)) }
  }

  const lead = () =>
    new Promise<void>((resolve) => {
      release = resolve
      leader = true
      post({ type: "hello" })
      announceAll(false)
      wants.schedule()
    })

  const resign = () => {
    leader = false
    stream?.stop()
    stream = undefined
    wants.clear()
    release?.()
    release = undefined
  }

  const queue = () => {
    if (queued) return
    queued = true
    void lockManager()!.request(name, () => {
      queued = false
      return local.size > 0 ? lead() : Promise.resolve()
    })
  }

  // A frozen tab runs no code: the leader hands over first; thawed, every subscription asks for
  // what may have been passed on meanwhile.
  let frozen = false
  const onFreeze = () => {
    frozen = true
    if (leader) resign()
  }
  const onResume = () => {
    if (!frozen) return
    frozen = false
    if (local.size > 0) queue()
    announceAll(true)
  }
  const documentTarget = (globalThis as { readonly document?: EventTarget }).document
  documentTarget?.addEventListener("freeze", onFreeze)
  documentTarget?.addEventListener("resume", onResume)
  setInterval(() => {
    announceAll(false)
    if (leader) followWants()
  }, heartbeat)

  /** The messages of `channels` (none: all) after `lastEventId`, shared with the other tabs. */
  const subscribe = (
    channels: ReadonlyArray<string>,
    lastEventId: string | undefined,
    onReset: (reset: unknown) => Effect.Effect<void>,
    refused: (status: number, body: string) => E
  ): Stream.Stream<Message, E> =>
    Stream.asyncScoped<Message, E>((emit) =>
      Effect.gen(function*() {
        const sub = randomId()
        local.set(sub, {
          channels: channels.length === 0 ? undefined : new Set(channels),
          after: lastEventId ?? "",
          deliver: (message) => void emit.single(message),
          reset: (reset) => void Runtime.runFork(runtime)(onReset(reset)),
          refused: (status, body) => void emit.fail(refused(status, body))
        })
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            local.delete(sub)
            if (leader) onBus({ type: "gone", sub })
            else post({ type: "gone", sub })
            if (local.size === 0 && leader) resign()
          })
        )
        queue()
        const message = want(sub, false)!
        if (leader) onBus(message)
        else post(message)
      })
    )

  return { subscribe }
}

/** The group of tabs that may share a stream: those presenting the same token (or none). */
export const groupOf = (token: string | undefined) =>
  Effect.promise(async () => {
    if (token === undefined || token === "") return "anonymous"
    const subtle = (globalThis as {
      readonly crypto?: { readonly subtle?: { readonly digest: (algorithm: string, data: Uint8Array) => Promise<ArrayBuffer> } }
    }).crypto?.subtle
    // Without crypto.subtle, no sharing (the token's name would show in the lock's name).
    if (subtle === undefined) return undefined
    const digest = await subtle.digest("SHA-256", new TextEncoder().encode(token))
    return Array.from(new Uint8Array(digest).slice(0, 16), (byte) => byte.toString(16).padStart(2, "0")).join("")
  })

export interface TabHub<E> {
  readonly subscribe: (
    channels: ReadonlyArray<string>,
    lastEventId: string | undefined,
    onReset: (reset: unknown) => Effect.Effect<void>,
    refused: (status: number, body: string) => E
  ) => Stream.Stream<Message, E>
}
