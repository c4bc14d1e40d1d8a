/**
 * Wake-ups for the poller from other nodes: the notification each node sends after its writes
 * commit (see MessageRepo; writers who accept the cost may send it from their own transactions, see
 * the README), received on a LISTEN connection of its own. A wake-up only says "poll now": the
 * poll still reads every row, so a lost one costs at most a probe or a POLL_INTERVAL. A
 * transaction-mode pooler cannot hold a LISTEN (its session is lent to whoever asks next): with
 * DATABASE_POOLER=transaction the node does not listen, and says so at start-up.
 *
 * The connection is a `pg` Client of its own, outside the pool, held in a Scope; when it drops it
 * is re-established with backoff, with one log line when it is lost and one when it is back.
 * Not `PgClient.listen` (@effect/sql-pg 0.53): its stream skips notifications with an empty
 * payload and, when its connection drops, goes silent without failing (Effect-TS/effect#3775),
 * so it could never be re-established.
 */
import type { PgClientConfig } from "@effect/sql-pg/PgClient"
import { PgClient } from "@effect/sql-pg"
import { Clock, Context, Data, Deferred, Duration, Effect, Exit, Layer, PubSub, Redacted, Schedule, Stream } from "effect"
import pg from "pg"
import { AppConfig } from "../Config.js"
import { MessageRepo } from "../Storage/MessageRepo.js"
import { wakeupChannel } from "../Storage/migrations/00003_notify_wakeup.js"
import { counter, gauge } from "../Metrics.js"
import { messageOf } from "../Domain/Errors.js"

/**
 * - `disabled`: NOTIFY_WAKEUP is off;
 * - `connecting`: not listening yet, at start-up;
 * - `listening`: notifications arrive;
 * - `reconnecting`: the connection was lost or could not be made; retried with backoff.
 */
export type WakeupState = "disabled" | "connecting" | "listening" | "reconnecting"

export interface WakeupStatus {
  readonly state: WakeupState
  /** Notifications received since start. */
  readonly notifications: number
  /** How many times the LISTEN connection was lost, or could not be made at start-up. */
  readonly outages: number
}

export class Wakeups extends Context.Tag("pollcast/Wakeups")<Wakeups, {
  /**
   * One element per notification received, and one each time listening starts (what was
   * inserted while nobody listened was not announced). Never fails, never ends.
   */
  readonly ticks: Stream.Stream<void>
  readonly status: Effect.Effect<WakeupStatus>
}>() {
  /** No wake-ups: the poller keeps to POLL_INTERVAL. */
  static readonly disabled = Layer.succeed(
    Wakeups,
    Wakeups.of({ ticks: Stream.never, status: Effect.succeed({ state: "disabled", notifications: 0, outages: 0 }) })
  )
}

export const wakeups = counter("pollcast_wakeups_total", "Notifications of committed inserts received on the LISTEN connection (each asks for a poll)").register()
export const listening = gauge("pollcast_wakeup_listening", "1 while the LISTEN connection for wake-ups is established, else 0 (also 0 with NOTIFY_WAKEUP=false)").register()
export const wakeupOutages = counter("pollcast_wakeup_outages_total", "Times the LISTEN connection was lost, or could not be made at start-up").register()

export class WakeupConnectionError extends Data.TaggedError("WakeupConnectionError")<{ readonly message: string }> {}


/** The pool's connection settings, for a connection of its own that operators can tell apart. */
const connectionConfig = (config: PgClientConfig): pg.ClientConfig => ({
  ...(config.url === undefined
    ? {
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.username,
      password: config.password === undefined ? undefined : Redacted.value(config.password)
    }
    : { connectionString: Redacted.value(config.url) }),
  ...(config.ssl === undefined ? {} : { ssl: config.ssl }),
  application_name: "pollcast wakeups",
  connectionTimeoutMillis: Duration.toMillis(config.connectTimeout ?? Duration.seconds(5)),
  // Bounds the LISTEN itself, its only query.
  query_timeout: Duration.toMillis(config.connectTimeout ?? Duration.seconds(5)),
  // An idle LISTEN connection sends nothing: TCP keepalive notices a peer that vanished silently
  // (after the system's probes, about 11 minutes on Linux's defaults), and keeps NAT state alive.
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000
})

/**
 * A connected client that LISTENs, closed with the Scope, and `lost`, which fails once its
 * connection ends for any reason. Connecting can be interrupted (at shutdown, say).
 */
const listen = (config: pg.ClientConfig, announcer: string, onNotification: (payload: string) => void) =>
  Effect.gen(function*() {
    const lost = yield* Deferred.make<never, WakeupConnectionError>()
    const client = new pg.Client(config)
    const fail = (message: string) => Deferred.unsafeDone(lost, Exit.fail(new WakeupConnectionError({ message })))
    // Listened to before connecting: an 'error' event with no listener would crash the process.
    client.on("error", (error) => fail(error.message))
    client.on("end", () => fail("the connection ended"))
    client.on("notification", (notification) => {
      // A node's own announcements are no wake-up for it: its poller was told at the commit.
      if (notification.channel === wakeupChannel && notification.payload !== announcer) {
        onNotification(notification.payload ?? "")
      }
    })
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => client.end().catch(() => undefined)).pipe(Effect.timeoutOption("1 second"))
    )
    yield* Effect.tryPromise({
      try: async () => {
        await client.connect()
        await client.query(`LISTEN ${pg.escapeIdentifier(wakeupChannel)}`)
      },
      catch: (cause) => new WakeupConnectionError({ message: messageOf(cause) })
    })
    return { lost: Deferred.await(lost) }
  })

/** Reconnection delays: 100 ms doubling up to 5 s. */
const reconnectBackoff = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))

/** A connection that held this long was not flapping: the next outage starts the backoff afresh. */
const stableAfter = Duration.minutes(1)

/** The payload of the notification a node sends itself once it listens, to hear that it does. */
const hearingTest = (announcer: string) => `hearing ${announcer}`

const make = (config: pg.ClientConfig, announcer: string, notify: (payload: string) => Effect.Effect<void, unknown>) =>
  Effect.gen(function*() {
    const pubsub = yield* Effect.acquireRelease(PubSub.sliding<void>(1), PubSub.shutdown)
    let state: WakeupState = "connecting"
    let notifications = 0
    let outages = 0
    const retry = yield* Schedule.driver(reconnectBackoff)
    yield* Effect.addFinalizer(() => Effect.sync(() => listening.unsafeUpdate(0, [])))

    let heard: Deferred.Deferred<void> | undefined
    const onNotification = (payload: string) => {
      if (payload.startsWith("hearing ")) {
        if (payload === hearingTest(announcer) && heard !== undefined) Deferred.unsafeDone(heard, Exit.void)
        return
      }
      notifications++
      wakeups.unsafeUpdate(1, [])
      pubsub.unsafeOffer(undefined)
    }

    // Once it listens, a node notifies itself from the pool: a LISTEN through a transaction-mode
    // pooler succeeds, then hears nothing (its session serves whoever comes next). Said once; the
    // probe and the node's own commits wake the poller meanwhile.
    let warnedDeaf = false
    const testHearing = Effect.gen(function*() {
      heard = yield* Deferred.make<void>()
      yield* notify(hearingTest(announcer)).pipe(Effect.ignore)
      const answered = yield* Deferred.await(heard).pipe(Effect.timeoutTo({ duration: "5 seconds", onSuccess: () => true, onTimeout: () => false }))
      if (answered || warnedDeaf) return
      warnedDeaf = true
      yield* Effect.logWarning(
        "The LISTEN connection for wake-ups hears nothing, not even this node's own test notification: is DATABASE_URL a " +
          "transaction-mode pooler (PgBouncer's pool_mode = transaction)? Then set DATABASE_POOLER=transaction. Meanwhile " +
          "other nodes' messages arrive by the probe (WAKEUP_PROBE_INTERVAL) or POLL_INTERVAL"
      )
    })

    // One session: connect and LISTEN, then wait until the connection is lost.
    const session = Effect.gen(function*() {
      const connection = yield* listen(config, announcer, onNotification)
      if (state === "reconnecting") {
        yield* Effect.logInfo("Listening for wake-ups again: delivery is immediate again")
      }
      state = "listening"
      listening.unsafeUpdate(1, [])
      const listeningSince = yield* Clock.currentTimeMillis
      pubsub.unsafeOffer(undefined)
      yield* Effect.forkScoped(testHearing)
      const lost = yield* Effect.flip(connection.lost)
      state = "reconnecting"
      outages++
      listening.unsafeUpdate(0, [])
      wakeupOutages.unsafeUpdate(1, [])
      yield* Effect.logWarning(
        `Lost the LISTEN connection for wake-ups (${lost.message}); reconnecting with backoff, delivering every POLL_INTERVAL meanwhile`
      )
      if ((yield* Clock.currentTimeMillis) - listeningSince >= Duration.toMillis(stableAfter)) yield* retry.reset
    }).pipe(
      Effect.scoped,
      Effect.catchAll((error) => {
        if (state !== "connecting") return Effect.logDebug(`Reconnecting for wake-ups failed: ${error.message}`)
        state = "reconnecting"
        outages++
        wakeupOutages.unsafeUpdate(1, [])
        return Effect.logWarning(
          `Could not LISTEN for wake-ups (${error.message}); retrying with backoff, delivering every POLL_INTERVAL meanwhile`
        )
      })
    )

    yield* session.pipe(
      // The schedule never ends, so `next` never fails.
      Effect.zipRight(Effect.orDie(retry.next(undefined))),
      Effect.forever,
      Effect.annotateLogs({ service: "Wakeups" }),
      Effect.forkScoped
    )

    return Wakeups.of({
      ticks: Stream.fromPubSub(pubsub),
      status: Effect.sync(() => ({ state, notifications, outages }))
    })
  })

/** Listens on a connection made with the PgClient's settings. */
export const live = Layer.scoped(
  Wakeups,
  Effect.flatMap(
    Effect.all([PgClient.PgClient, MessageRepo]),
    ([client, repo]) =>
      make(connectionConfig(client.config), repo.announcer, (payload) => client`SELECT pg_notify(${wakeupChannel}, ${payload})`)
  )
)

/** Live unless NOTIFY_WAKEUP is off or the database is reached through a transaction-mode pooler. */
export const layer = Layer.unwrapEffect(
  Effect.gen(function*() {
    const config = yield* AppConfig
    if (!config.notifyWakeup) return Wakeups.disabled
    if (config.databasePooler !== "transaction") return live
    const probe = Duration.toMillis(config.wakeupProbeInterval) === 0
      ? "nothing but POLL_INTERVAL wakes the poller (WAKEUP_PROBE_INTERVAL is 0): other nodes' messages wait for it"
      : `the probe (every ${Duration.format(config.wakeupProbeInterval)}, WAKEUP_PROBE_INTERVAL) wakes the poller instead`
    yield* Effect.logInfo(
      `DATABASE_POOLER=transaction: not listening for other nodes' wake-ups (a transaction-mode pooler cannot hold a LISTEN); ${probe}`
    )
    return Wakeups.disabled
  })
)
