/**
 * How many workers a node runs: WORKERS if set, else enough for the machine's cores and for
 * MAX_STREAMS within what one process may hold open (`ulimit -n`, less room for everything else a
 * process opens). Said at start-up, with the figures it came from.
 */
import { Command } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Effect, Option } from "effect"
import * as Os from "node:os"
import { AppConfig } from "../Config.js"

/** Files a process keeps besides its clients' connections: database connections, modules, logs, the listening socket. */
export const reservedFiles = 1000

/** This process's open-file limit, as the shell says (`ulimit -n`); none if unlimited or unknown. */
export const openFileLimit = Command.string(Command.make("sh", "-c", "ulimit -n")).pipe(
  Effect.map((text) => Number.parseInt(text.trim(), 10)),
  Effect.map((limit) => (Number.isInteger(limit) && limit > 0 ? Option.some(limit) : Option.none())),
  Effect.orElseSucceed(() => Option.none<number>()),
  Effect.provide(NodeContext.layer)
)

export interface Plan {
  readonly workers: number
  /** Event streams one process can hold, if the open-file limit is known. */
  readonly streamsPerProcess: Option.Option<number>
}

/** The plan for `cores` cores, MAX_STREAMS `maxStreams` (0: no cap), and an open-file limit. */
export const planFor = (
  workers: Option.Option<number>,
  cores: number,
  maxStreams: number,
  openFiles: Option.Option<number>
): Plan => {
  const streamsPerProcess = Option.map(openFiles, (limit) => Math.max(1, limit - reservedFiles))
  const forStreams = Option.match(streamsPerProcess, {
    onNone: () => 1,
    onSome: (perProcess) => (maxStreams === 0 ? 1 : Math.ceil(maxStreams / perProcess))
  })
  return { workers: Option.getOrElse(workers, () => Math.max(cores, forStreams)), streamsPerProcess }
}

/** The plan for this machine, logged. */
export const plan = Effect.gen(function*() {
  const config = yield* AppConfig
  const cores = Os.availableParallelism()
  const openFiles = yield* openFileLimit
  const maxStreams = config.limits.maxStreams
  const planned = planFor(config.workers, cores, maxStreams, openFiles)
  const limit = Option.match(openFiles, { onNone: () => "no open-file limit known", onSome: (n) => `ulimit -n ${n}` })
  const chosen = Option.isSome(config.workers)
    ? "WORKERS"
    : `the default: ${cores} core(s), MAX_STREAMS ${maxStreams === 0 ? "uncapped" : maxStreams} within ${limit}`
  yield* Effect.logInfo(
    planned.workers === 1
      ? `Running as one process (${chosen})`
      : `Running as a primary and ${planned.workers} workers (${chosen})`
  )
  const capacity = Option.map(planned.streamsPerProcess, (perProcess) => perProcess * planned.workers)
  if (Option.isSome(capacity) && (maxStreams === 0 || maxStreams > capacity.value)) {
    yield* Effect.logWarning(
      `${planned.workers} process(es) can hold about ${capacity.value} event streams (${limit}, ${reservedFiles} files kept for the rest), ` +
        `fewer than MAX_STREAMS ${maxStreams === 0 ? "(uncapped)" : maxStreams}: raise WORKERS or ulimit -n, or lower MAX_STREAMS`
    )
  }
  return planned
})
