/**
 * A MessageRepo held in memory, for unit tests of what sits above it. Every message added is
 * final at once. Polls can be made slow (on the Clock, so TestClock drives them) or failing, and
 * are counted.
 */
import { Duration, Effect, Layer, Option, PubSub, Stream } from "effect"
import { DatabaseError, MessageRepo } from "../../src/Storage/MessageRepo.js"
import { SqlError } from "@effect/sql/SqlError"
import { beginning, type Channel, Message, type MessageId, messageId } from "../../src/Domain/Message.js"

export interface InMemoryRepo {
  readonly layer: Layer.Layer<MessageRepo>
  readonly add: (channel: string, body: string) => Message
  readonly messages: ReadonlyArray<Message>
  readonly polls: () => number
  readonly probes: () => number
  /** Tells the poller that this node's writes have committed, as the real repo does. */
  readonly commit: () => void
  readonly maxConcurrentPolls: () => number
  readonly setFailing: (failing: boolean) => void
  /** Polls die (a defect, as from a bug) rather than fail. */
  readonly setDying: (dying: boolean) => void
  readonly setPollDuration: (duration: Duration.DurationInput) => void
  /** As retention would: every message up to `id` is gone. */
  readonly pruneThrough: (id: MessageId) => void
}

export const make = (): InMemoryRepo => {
  const messages: Array<Message> = []
  let polls = 0
  let probes = 0
  const commits = Effect.runSync(PubSub.unbounded<void>())
  let running = 0
  let maxConcurrentPolls = 0
  let failing = false
  let dying = false
  let pollDuration = Duration.zero
  let retainedAfter = beginning

  let sequence = 0
  const add = (channel: string, body: string) => {
    const seq = BigInt(++sequence)
    const message = new Message({
      id: messageId(1000n + seq, seq),
      channel: channel as Channel,
      author: "test",
      body,
      createdAt: new Date(0)
    })
    messages.push(message)
    return message
  }
  const after = (id: MessageId) => messages.filter((message) => message.id > id)
  const unavailable = new DatabaseError({ cause: new SqlError({ message: "connection refused (test)" }) })

  const repo = MessageRepo.of({
    insert: (input) => Effect.sync(() => add(input.channel, input.body)),
    poll: (from, limit) =>
      Effect.gen(function*() {
        polls++
        running++
        maxConcurrentPolls = Math.max(maxConcurrentPolls, running)
        yield* Effect.sleep(pollDuration)
        if (failing) return yield* Effect.fail(unavailable)
        if (dying) return yield* Effect.die(new Error("a bug in the poll (test)"))
        return after(from).slice(0, limit)
      }).pipe(Effect.ensuring(Effect.sync(() => running--))),
    head: Effect.sync(() => messages[messages.length - 1]?.id ?? beginning),
    newest: (channels, through) =>
      Effect.sync(() =>
        messages.filter((message) => message.id <= through && (channels === "all" || channels.includes(message.channel))).at(-1)?.id ??
          beginning
      ),
    // Yields first, as a query to a database would, so that other fibers run in between.
    replay: ({ after: from, channels, limit, maxBytes, through }) =>
      Effect.zipRight(
        Effect.yieldNow(),
        Effect.sync(() => {
          let bytes = 0
          return after(from)
            .filter((message) => message.id <= through && (channels === "all" || channels.includes(message.channel)))
            .slice(0, limit)
            .filter((message) => {
              const before = bytes
              bytes += Buffer.byteLength(message.body)
              return before < maxBytes
            })
        })
      ),
    history: () => Effect.die("not used by these tests"),
    retainedAfter: Effect.sync(() => retainedAfter),
    prune: () => Effect.die("not used by these tests"),
    ping: Effect.void,
    recreateTables: () => Effect.void,
    // Every message is final at once: the horizon never holds anything back.
    probe: Effect.sync(() => {
      probes++
      return { lastId: BigInt(sequence), horizon: "0" }
    }),
    position: Effect.succeed(beginning),
    announcer: "test",
    transactionCounter: Effect.succeed(2n ** 62n),
    committed: Stream.fromPubSub(commits),
    failingWrite: Effect.succeed(Option.none())
  })

  return {
    layer: Layer.succeed(MessageRepo, repo),
    add,
    messages,
    polls: () => polls,
    probes: () => probes,
    commit: () => {
      commits.unsafeOffer(undefined)
    },
    maxConcurrentPolls: () => maxConcurrentPolls,
    setFailing: (value) => {
      failing = value
    },
    setDying: (value) => {
      dying = value
    },
    setPollDuration: (duration) => {
      pollDuration = Duration.decode(duration)
    },
    pruneThrough: (id) => {
      retainedAfter = id
      messages.splice(0, messages.filter((message) => message.id <= id).length)
    }
  }
}
