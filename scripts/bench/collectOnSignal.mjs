/**
 * Preloaded by the benchmark into both servers (pollcast and the baseline) and nothing else: on
 * SIGUSR2, a full garbage collection. Memory per connection is then measured on what is live,
 * not on whatever garbage the last burst of connections happened to leave behind.
 */
process.on("SIGUSR2", () => globalThis.gc?.())
