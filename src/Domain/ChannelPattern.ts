/**
 * Channel patterns, the unit of access rights: a channel name (`news`), a prefix ending in `*`
 * (`team.*` matches `team.a` and `team.a.b`, not `team`), or `*` for every channel.
 */
import { Schema } from "effect"

export const channelPatternSyntax = /^(?:\*|[A-Za-z0-9_.:-]{1,64}|[A-Za-z0-9_.:-]{1,63}\*)$/

export const ChannelPattern = Schema.String.pipe(
  Schema.pattern(channelPatternSyntax, {
    message: () => "must be a channel name, a prefix ending in '*' such as team.*, or * for every channel"
  })
)

/** A set of channel patterns, ready to match channels against. */
export class Patterns {
  private constructor(
    /** Whether `*` is among them. */
    readonly everything: boolean,
    private readonly exact: ReadonlySet<string>,
    private readonly prefixes: ReadonlyArray<string>
  ) {}

  static readonly none = new Patterns(false, new Set(), [])
  static readonly all = new Patterns(true, new Set(), [])

  /** The patterns must match `channelPatternSyntax` (Config and the token's schema check it). */
  static of(patterns: ReadonlyArray<string>): Patterns {
    if (patterns.includes("*")) return Patterns.all
    const exact = new Set<string>()
    const prefixes: Array<string> = []
    for (const pattern of patterns) {
      if (pattern.endsWith("*")) prefixes.push(pattern.slice(0, -1))
      else exact.add(pattern)
    }
    return exact.size === 0 && prefixes.length === 0 ? Patterns.none : new Patterns(false, exact, prefixes)
  }

  get isEmpty(): boolean {
    return !this.everything && this.exact.size === 0 && this.prefixes.length === 0
  }

  allows(channel: string): boolean {
    return this.everything || this.exact.has(channel) || this.prefixes.some((prefix) => channel.startsWith(prefix))
  }

  union(other: Patterns): Patterns {
    if (this.everything || other.isEmpty) return this
    if (other.everything || this.isEmpty) return other
    return new Patterns(false, new Set([...this.exact, ...other.exact]), [...this.prefixes, ...other.prefixes])
  }
}
