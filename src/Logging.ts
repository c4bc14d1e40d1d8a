/**
 * How the service writes its log: LOG_FORMAT's logger at LOG_LEVEL. The `json` and `logfmt` lines
 * (for machines, and the default off a terminal) are written in batches, 50 ms at a time, one write
 * for all: a write per line (one system call each, and a wake-up of whatever reads the pipe) cost
 * more than the line itself once every request has one. `pretty` writes each line at once.
 */
import { Effect, Layer, Logger, type LogLevel } from "effect"
import type { LogFormat } from "./Config.js"

const flushEvery = "50 millis"

const inBatches = (logger: Logger.Logger<unknown, string>) =>
  Logger.replaceScoped(
    Logger.defaultLogger,
    Logger.batched(logger, flushEvery, (lines) => Effect.sync(() => process.stdout.write(`${lines.join("\n")}\n`)))
  )

export const layer = (format: LogFormat, level: LogLevel.LogLevel) =>
  Layer.merge(
    format === "pretty" ? Logger.pretty : inBatches(format === "json" ? Logger.jsonLogger : Logger.logfmtLogger),
    Logger.minimumLogLevel(level)
  )
