/**
 * Every setting of pollcast, read once from the environment through `effect/Config`.
 * Defaults live here and nowhere else; an invalid value stops start-up with a message naming it.
 */
import { Config, ConfigError, Context, Duration, Either, Layer, LogLevel, Option, Redacted } from "effect"
import { channelPatternSyntax } from "./Domain/ChannelPattern.js"
import { maxBodyBytesLimit } from "./Domain/Message.js"

/** What stands between the node and PostgreSQL: nothing, or a pooler in session or transaction mode. */
export type DatabasePooler = "none" | "session" | "transaction"

export interface Settings {
  readonly host: string
  readonly port: number
  /**
   * The node's worker processes, which serve its port (see Cluster/Primary); none: enough for the
   * machine's cores and for MAX_STREAMS within the open-file limit. 1: a single process.
   */
  readonly workers: Option.Option<number>
  /** An external PostgreSQL; when absent an embedded server is started in `dataDir`. */
  readonly databaseUrl: Option.Option<Redacted.Redacted>
  readonly dataDir: string
  readonly embeddedPostgresPort: number
  readonly databasePoolSize: number
  /** A database connection that sends a request and hears nothing back for this long is closed. */
  readonly databaseTimeout: Duration.Duration
  readonly pollInterval: Duration.Duration
  readonly pollBatchSize: number
  /** Poll as soon as a node announces a write it committed (LISTEN/NOTIFY), besides every pollInterval. */
  readonly notifyWakeup: boolean
  /**
   * How often to ask PostgreSQL whether anything was written (an O(1) query), so that other
   * systems' plain INSERTs are delivered promptly; zero: never.
   */
  readonly wakeupProbeInterval: Duration.Duration
  /** `transaction`: the database is reached through a transaction-mode pooler (no LISTEN). */
  readonly databasePooler: DatabasePooler
  /** The least time between the starts of two polls, so that a stream of notifications batches. */
  readonly wakeupMinGap: Duration.Duration
  /**
   * The largest share of its time a node spends fanning out when woken: after a fan-out, the next
   * poll waits long enough to keep it (lower: fewer, larger writes under load; higher: lower latency).
   */
  readonly fanOutShare: number
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
  /** How long a new connection may take to send its first request head before it is closed. */
  readonly firstRequestTimeout: Duration.Duration
  readonly shutdownTimeout: Duration.Duration
  readonly logLevel: LogLevel.LogLevel
  /** How log lines are written: `pretty` (for people, the default on a terminal), `json` or `logfmt` (the default otherwise). */
  readonly logFormat: LogFormat
  /** Whether every request gets an access line (at info). */
  readonly accessLog: boolean
  /** An OpenTelemetry collector (OTLP over HTTP) to export traces to; none: traces are not exported. */
  readonly otlpEndpoint: Option.Option<URL>
  /** The service's name in traces and metrics' target_info (OpenTelemetry's OTEL_SERVICE_NAME). */
  readonly serviceName: string
  /** Access control: see Access.ts and the README's Security section. */
  readonly auth: AuthSettings
  readonly limits: LimitSettings
  /** Origins other than the node's own that browsers may call /messages and /events from; "*": any. */
  readonly corsOrigins: ReadonlyArray<string>
  /** Proxies in front of the node whose forwarding headers are believed (0: none). */
  readonly trustProxy: number
  /**
   * Host names browsers may reach the node by, besides IP addresses, localhost and this machine's
   * name: exact names, `*.example.com` for its subdomains, or `*` for any.
   */
  readonly allowedHosts: ReadonlyArray<string>
}

export type LogFormat = "pretty" | "json" | "logfmt"

export interface AuthSettings {
  /** The HS256 key. */
  readonly secret: Option.Option<Redacted.Redacted>
  /** A PEM (SPKI) public key or a JWK, for RS256, ES256 or EdDSA. */
  readonly publicKey: Option.Option<Redacted.Redacted>
  readonly jwksUrl: Option.Option<URL>
  /** How long a fetched key set is used before it is fetched again. */
  readonly jwksMaxAge: Duration.Duration
  /** The least time between two fetches of the key set (a token with an unknown key asks for one). */
  readonly jwksCooldown: Duration.Duration
  readonly issuer: Option.Option<string>
  readonly audience: Option.Option<string>
  /** Allowance for clocks that differ, on `exp` and `nbf`. */
  readonly clockTolerance: Duration.Duration
  /** Channel patterns a request without a token may publish to / read; none: the default for the mode. */
  readonly anonymousPublish: Option.Option<ReadonlyArray<string>>
  readonly anonymousSubscribe: Option.Option<ReadonlyArray<string>>
}

export interface LimitSettings {
  /** Messages per second one identity may publish on average (0: no limit). */
  readonly publishRate: number
  /** Messages one identity may publish at once before the rate applies. */
  readonly publishBurst: number
  /** Open event streams per client address (0: no cap). */
  readonly maxStreamsPerClient: number
  /** Open event streams on this node (0: no cap). */
  readonly maxStreams: number
  /** Open connections per client address, when clients connect directly (0: no cap). */
  readonly maxConnectionsPerClient: number
}

// Each setting is read through Config.nested(name), so that a failed check still names it.
type DurationText = `${number} ${Duration.Unit}`

/**
 * A duration from `minimum` to `maximum`. Every duration setting has both: a tiny one spins a loop
 * (RETENTION_INTERVAL=1 nanos), a huge one overflows Node's timers (above 24.8 days) or undoes what
 * the setting is for (AUTH_CLOCK_TOLERANCE=1000 days accepts any expired token). A negative one is
 * refused as written, not read as zero.
 */
const durationBetween = (name: string, minimum: DurationText, maximum: DurationText) => {
  const [low, high] = [Duration.decode(minimum), Duration.decode(maximum)]
  return Config.string().pipe(
    Config.mapOrFail((text) => {
      const duration = text.trim().startsWith("-") ? Option.none() : Duration.decodeUnknown(text.trim())
      return Option.isSome(duration) && Duration.between(duration.value, { minimum: low, maximum: high })
        ? Either.right(duration.value)
        : Either.left(ConfigError.InvalidData([], `must be a duration from ${minimum} to ${maximum}, such as "${maximum}"`))
    }),
    Config.nested(name)
  )
}

const duration = (name: string, fallback: DurationText, minimum: DurationText, maximum: DurationText) =>
  durationBetween(name, minimum, maximum).pipe(Config.withDefault(Duration.decode(fallback)))

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

/** A list separated by commas or white space; empty when the variable is set but blank. */
const list = (name: string, check: (item: string) => string | undefined) =>
  Config.string().pipe(
    Config.mapOrFail((text) => {
      const items = text.split(/[\s,]+/).filter((item) => item !== "")
      for (const item of items) {
        const problem = check(item)
        if (problem !== undefined) return Either.left(ConfigError.InvalidData([], `${JSON.stringify(item)} ${problem}`))
      }
      return Either.right(items)
    }),
    Config.nested(name)
  )

const channelPatterns = (name: string) =>
  Config.option(list(name, (item) =>
    channelPatternSyntax.test(item)
      ? undefined
      : "is not a channel pattern: give channel names, prefixes ending in '*' such as team.*, or * for every channel"))

const origin = (item: string) => {
  if (item === "*") return undefined
  try {
    const url = new URL(item)
    return url.origin === item && (url.protocol === "http:" || url.protocol === "https:")
      ? undefined
      : "is not an origin: write it as scheme://host[:port], e.g. https://chat.example.com, with no path or trailing slash"
  } catch {
    return "is not an origin such as https://chat.example.com"
  }
}

// At least 256 bits, as RFC 7518 requires of an HS256 key.
const minimumSecretBytes = 32

const auth: Config.Config<AuthSettings> = Config.all({
  secret: Config.option(
    Config.redacted().pipe(
      Config.validate({
        message: `must be at least ${minimumSecretBytes} bytes long; generate one with \`npm run token -- --new-secret\``,
        validation: (secret) => Redacted.value(secret) === "" || Buffer.byteLength(Redacted.value(secret)) >= minimumSecretBytes
      }),
      Config.nested("AUTH_SECRET")
    )
  ).pipe(Config.map(Option.filter((secret) => Redacted.value(secret) !== ""))),
  publicKey: Config.option(Config.redacted("AUTH_PUBLIC_KEY")).pipe(
    Config.map(Option.filter((key) => Redacted.value(key).trim() !== ""))
  ),
  jwksUrl: Config.option(
    Config.url().pipe(
      Config.validate({
        message: "must be an http:// or https:// URL",
        validation: (url) => url.protocol === "https:" || url.protocol === "http:"
      }),
      Config.nested("AUTH_JWKS_URL")
    )
  ),
  jwksMaxAge: duration("AUTH_JWKS_MAX_AGE", "10 minutes", "1 second", "7 days"),
  jwksCooldown: duration("AUTH_JWKS_COOLDOWN", "30 seconds", "0 seconds", "1 hour"),
  issuer: Config.option(Config.nonEmptyString("AUTH_ISSUER")),
  audience: Config.option(Config.nonEmptyString("AUTH_AUDIENCE")),
  clockTolerance: duration("AUTH_CLOCK_TOLERANCE", "5 seconds", "0 seconds", "5 minutes"),
  anonymousPublish: channelPatterns("ANONYMOUS_PUBLISH"),
  anonymousSubscribe: channelPatterns("ANONYMOUS_SUBSCRIBE")
})

const limits: Config.Config<LimitSettings> = Config.all({
  publishRate: Config.number().pipe(
    Config.validate({
      message: "must be a number of messages per second from 0 (no limit) to 1000000",
      validation: (rate) => rate >= 0 && rate <= 1_000_000
    }),
    Config.nested("PUBLISH_RATE"),
    Config.withDefault(20)
  ),
  publishBurst: integerBetween("PUBLISH_BURST", 40, 1, 1_000_000),
  maxStreamsPerClient: integerBetween("MAX_STREAMS_PER_CLIENT", 256, 0, 1_000_000),
  maxStreams: integerBetween("MAX_STREAMS", 10_000, 0, 1_000_000),
  maxConnectionsPerClient: integerBetween("MAX_CONNECTIONS_PER_CLIENT", 512, 0, 1_000_000)
})

// TRUST_PROXY: a number of proxies, or true (one) / false (none).
const trustProxy = Config.string().pipe(
  Config.mapOrFail((text) => {
    const value = text.trim().toLowerCase()
    if (value === "true" || value === "yes") return Either.right(1)
    if (value === "false" || value === "no" || value === "") return Either.right(0)
    const count = Number(value)
    return Number.isInteger(count) && count >= 0 && count <= 10
      ? Either.right(count)
      : Either.left(ConfigError.InvalidData([], "must be the number of proxies in front of the node (0 to 10), true (1) or false (0)"))
  }),
  Config.nested("TRUST_PROXY"),
  Config.withDefault(0)
)

const logFormats: ReadonlyArray<LogFormat> = ["pretty", "json", "logfmt"]

const logFormat = Config.string().pipe(
  Config.mapOrFail((text) => {
    const format = logFormats.find((candidate) => candidate === text.trim().toLowerCase())
    return format === undefined
      ? Either.left(ConfigError.InvalidData([], "must be pretty, json or logfmt"))
      : Either.right(format)
  }),
  Config.nested("LOG_FORMAT"),
  Config.withDefault<LogFormat>(process.stdout.isTTY ? "pretty" : "logfmt")
)

// The variable OpenTelemetry's SDKs read; traces go to its /v1/traces. Blank counts as unset.
const otlpEndpoint = Config.option(
  Config.string().pipe(
    Config.mapOrFail((text) => {
      if (text.trim() === "") return Either.right(Option.none<URL>())
      const url = URL.canParse(text.trim()) ? new URL(text.trim()) : undefined
      return url !== undefined && (url.protocol === "https:" || url.protocol === "http:")
        ? Either.right(Option.some(url))
        : Either.left(ConfigError.InvalidData([], "must be an http:// or https:// URL, such as http://localhost:4318"))
    }),
    Config.nested("OTEL_EXPORTER_OTLP_ENDPOINT")
  )
).pipe(Config.map(Option.flatten))

export const settings: Config.Config<Settings> = Config.all({
  host: nonEmpty("HOST", "0.0.0.0"),
  port: integerBetween("PORT", 8080, 0, 65_535),
  workers: Config.option(
    Config.integer().pipe(
      Config.validate({ message: "must be a whole number of processes from 1 to 256", validation: (value) => value >= 1 && value <= 256 }),
      Config.nested("WORKERS")
    )
  ),
  databaseUrl: Config.option(Config.redacted("DATABASE_URL")).pipe(
    Config.map(Option.filter((url) => Redacted.value(url).trim() !== ""))
  ),
  dataDir: nonEmpty("DATA_DIR", "./.pollcast"),
  embeddedPostgresPort: integerBetween("EMBEDDED_POSTGRES_PORT", 54_329, 1, 65_535),
  databasePoolSize: integerBetween("DATABASE_POOL_SIZE", 10, 2, 1000),
  databaseTimeout: duration("DATABASE_TIMEOUT", "10 seconds", "100 millis", "1 hour"),
  pollInterval: duration("POLL_INTERVAL", "1 second", "10 millis", "1 hour"),
  pollBatchSize: integerBetween("POLL_BATCH_SIZE", 500, 1, 10_000),
  notifyWakeup: Config.boolean().pipe(Config.nested("NOTIFY_WAKEUP"), Config.withDefault(true)),
  wakeupMinGap: duration("WAKEUP_MIN_GAP", "10 millis", "0 millis", "10 seconds"),
  wakeupProbeInterval: duration("WAKEUP_PROBE_INTERVAL", "50 millis", "0 millis", "1 hour").pipe(
    Config.validate({
      message: "must be 0 millis (no probe) or at least 5 millis",
      validation: (interval) => Duration.toMillis(interval) === 0 || Duration.toMillis(interval) >= 5
    })
  ),
  databasePooler: Config.literal("none", "session", "transaction")("DATABASE_POOLER").pipe(Config.withDefault("none" as const)),
  fanOutShare: Config.number().pipe(
    Config.validate({ message: "must be a number above 0 and at most 1, such as 0.25", validation: (share) => share > 0 && share <= 1 }),
    Config.nested("FANOUT_SHARE"),
    Config.withDefault(0.25)
  ),
  heartbeatInterval: duration("HEARTBEAT_INTERVAL", "15 seconds", "100 millis", "1 hour"),
  sseRetry: duration("SSE_RETRY", "2 seconds", "100 millis", "1 hour"),
  maxBodyBytes: integerBetween("MAX_BODY_BYTES", 16_384, 1, maxBodyBytesLimit),
  clientBufferBytes: integerBetween("CLIENT_BUFFER_BYTES", 1_048_576, 1024, 1_073_741_824),
  clientStallTimeout: duration("CLIENT_STALL_TIMEOUT", "30 seconds", "100 millis", "1 hour"),
  messageRetention: Config.option(durationBetween("MESSAGE_RETENTION", "1 second", "36500 days")),
  retentionInterval: duration("RETENTION_INTERVAL", "1 minute", "100 millis", "1 day"),
  keepAliveTimeout: duration("KEEP_ALIVE_TIMEOUT", "65 seconds", "1 second", "1 hour"),
  firstRequestTimeout: duration("FIRST_REQUEST_TIMEOUT", "10 seconds", "100 millis", "5 minutes"),
  shutdownTimeout: duration("SHUTDOWN_TIMEOUT", "5 seconds", "100 millis", "10 minutes"),
  logLevel: Config.logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info)),
  logFormat,
  accessLog: Config.boolean().pipe(Config.nested("ACCESS_LOG"), Config.withDefault(true)),
  otlpEndpoint,
  serviceName: nonEmpty("OTEL_SERVICE_NAME", "pollcast"),
  auth,
  limits,
  corsOrigins: list("CORS_ORIGINS", origin).pipe(Config.withDefault([])),
  allowedHosts: list("ALLOWED_HOSTS", (item) =>
    /^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$/i.test(item)
      ? undefined
      : "is not a host name: give names such as chat.example.com, *.example.com for subdomains, or * for any, with no port").pipe(
      Config.withDefault([])
    ),
  trustProxy
})

export class AppConfig extends Context.Tag("pollcast/AppConfig")<AppConfig, Settings>() {
  /** Reads the settings from the current ConfigProvider (the environment, unless a test sets another). */
  static readonly layer = Layer.effect(AppConfig, settings)
}
