/**
 * Every setting of pollcast, read once from the environment through `effect/Config`.
 * Defaults live here and nowhere else; an invalid value stops start-up with a message naming it.
 */
import { Config, Context, Duration, Layer, LogLevel, Option, Redacted } from "effect"

export interface Settings {
  readonly host: string
  readonly port: number
  /** An external PostgreSQL; when absent an embedded server is started in `dataDir`. */
  readonly databaseUrl: Option.Option<Redacted.Redacted>
  readonly dataDir: string
  readonly embeddedPostgresPort: number
  readonly databasePoolSize: number
  readonly pollInterval: Duration.Duration
  readonly pollBatchSize: number
  /** Poll as soon as PostgreSQL notifies an insert (LISTEN/NOTIFY), besides every pollInterval. */
  readonly notifyWakeup: boolean
  /** The least time between the starts of two polls, so that a stream of notifications batches. */
  readonly wakeupMinGap: Duration.Duration
  readonly heartbeatInterval: Duration.Duration
  /** The reconnection delay sent to clients in the SSE `retry:` field. */
  readonly sseRetry: Duration.Duration
  readonly maxBodyBytes: number
  /** Bytes of events a client may leave unread before it is disconnected (it resumes with Last-Event-ID). */
  readonly clientBufferBytes: number
  /** A client with bytes waiting that takes none of them for this long is disconnected. */
  readonly clientStallTimeout: Duration.Duration
  /** How long messages are kept; none: forever. */
  readonly messageRetention: Option.Option<Duration.Duration>
  /** How often expired messages are looked for (with MESSAGE_RETENTION). */
  readonly retentionInterval: Duration.Duration
  /** How long an idle keep-alive connection stays open; longer than a proxy's own, so it closes first. */
  readonly keepAliveTimeout: Duration.Duration
  readonly shutdownTimeout: Duration.Duration
  readonly logLevel: LogLevel.LogLevel
}

// Each setting is read through Config.nested(name), so that a failed check still names it.
const anyPositiveDuration = (name: string) =>
  Config.duration().pipe(
    Config.validate({
      message: `must be a positive duration such as "1 second" or "250 millis"`,
      validation: (duration) => Duration.greaterThan(duration, Duration.zero)
    }),
    Config.nested(name)
  )

const positiveDuration = (name: string, fallback: Duration.DurationInput) =>
  anyPositiveDuration(name).pipe(Config.withDefault(Duration.decode(fallback)))

const nonNegativeDuration = (name: string, fallback: Duration.DurationInput) =>
  Config.duration().pipe(
    Config.validate({
      message: `must be a duration such as "10 millis", or "0 millis"`,
      validation: (duration) => Duration.greaterThanOrEqualTo(duration, Duration.zero) && Duration.isFinite(duration)
    }),
    Config.nested(name),
    Config.withDefault(Duration.decode(fallback))
  )

const integerBetween = (name: string, fallback: number, min: number, max: number) =>
  Config.integer().pipe(
    Config.validate({
      message: `must be a whole number from ${min} to ${max}`,
      validation: (value) => value >= min && value <= max
    }),
    Config.nested(name),
    Config.withDefault(fallback)
  )

const nonEmpty = (name: string, fallback: string) =>
  Config.string().pipe(
    Config.validate({ message: "must not be empty", validation: (value) => value.length > 0 }),
    Config.nested(name),
    Config.withDefault(fallback)
  )

export const settings: Config.Config<Settings> = Config.all({
  host: nonEmpty("HOST", "0.0.0.0"),
  port: integerBetween("PORT", 8080, 0, 65_535),
  databaseUrl: Config.option(Config.redacted("DATABASE_URL")).pipe(
    Config.map(Option.filter((url) => Redacted.value(url).trim() !== ""))
  ),
  dataDir: nonEmpty("DATA_DIR", "./.pollcast"),
  embeddedPostgresPort: integerBetween("EMBEDDED_POSTGRES_PORT", 54_329, 1, 65_535),
  databasePoolSize: integerBetween("DATABASE_POOL_SIZE", 10, 2, 1000),
  pollInterval: positiveDuration("POLL_INTERVAL", "1 second"),
  pollBatchSize: integerBetween("POLL_BATCH_SIZE", 500, 1, 10_000),
  notifyWakeup: Config.boolean().pipe(Config.nested("NOTIFY_WAKEUP"), Config.withDefault(true)),
  wakeupMinGap: nonNegativeDuration("WAKEUP_MIN_GAP", "10 millis"),
  heartbeatInterval: positiveDuration("HEARTBEAT_INTERVAL", "15 seconds"),
  sseRetry: positiveDuration("SSE_RETRY", "2 seconds"),
  maxBodyBytes: integerBetween("MAX_BODY_BYTES", 16_384, 1, 1_048_576),
  clientBufferBytes: integerBetween("CLIENT_BUFFER_BYTES", 1_048_576, 1024, 1_073_741_824),
  clientStallTimeout: positiveDuration("CLIENT_STALL_TIMEOUT", "30 seconds"),
  messageRetention: Config.option(anyPositiveDuration("MESSAGE_RETENTION")),
  retentionInterval: positiveDuration("RETENTION_INTERVAL", "1 minute"),
  keepAliveTimeout: positiveDuration("KEEP_ALIVE_TIMEOUT", "65 seconds"),
  shutdownTimeout: positiveDuration("SHUTDOWN_TIMEOUT", "5 seconds"),
  logLevel: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))
})

export class AppConfig extends Context.Tag("pollcast/AppConfig")<AppConfig, Settings>() {
  /** Reads the settings from the current ConfigProvider (the environment, unless a test sets another). */
  static readonly layer = Layer.effect(AppConfig, settings)
}
