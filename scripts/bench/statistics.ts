/**
 * The benches' statistics: a mergeable latency histogram, percentiles and medians of measured
 * figures, and a distribution-free interval for a median (for --repeat).
 */

// A latency histogram in microseconds: exact below 100 µs, then buckets 1 % wide, so percentiles
// are within 1 % of the truth whatever the range. Mergeable across processes.
const exactBelow = 100
const growth = Math.log(1.01)
const bucketCount = exactBelow + Math.ceil(Math.log(3_600_000_000 / exactBelow) / growth)

const indexOf = (micros: number) =>
  micros < exactBelow ? Math.max(0, Math.floor(micros)) : Math.min(bucketCount - 1, exactBelow + Math.floor(Math.log(micros / exactBelow) / growth))

const upperBoundOf = (index: number) => (index < exactBelow ? index + 1 : exactBelow * Math.exp((index - exactBelow + 1) * growth))

export class Histogram {
  private counts = new Float64Array(bucketCount)
  count = 0
  max = 0

  /** Records a latency given in milliseconds. */
  record(millis: number) {
    const micros = Math.max(0, millis * 1000)
    this.counts[indexOf(micros)]! += 1
    this.count++
    if (micros > this.max) this.max = micros
  }

  reset() {
    this.counts.fill(0)
    this.count = 0
    this.max = 0
  }

  merge(other: ReturnType<Histogram["toJSON"]>) {
    for (const [index, count] of other.buckets) this.counts[index]! += count
    this.count += other.count
    this.max = Math.max(this.max, other.max)
  }

  /** The latency, in milliseconds, below which `fraction` of the samples fall. */
  percentile(fraction: number): number {
    if (this.count === 0) return NaN
    const target = Math.ceil(fraction * this.count)
    let seen = 0
    for (let index = 0; index < bucketCount; index++) {
      seen += this.counts[index]!
      if (seen >= target) return Math.min(upperBoundOf(index), this.max) / 1000
    }
    return this.max / 1000
  }

  toJSON() {
    const buckets: Array<[number, number]> = []
    this.counts.forEach((count, index) => {
      if (count > 0) buckets.push([index, count])
    })
    return { buckets, count: this.count, max: this.max }
  }
}

/** `value` rounded to `digits` decimals. */
export const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits

/** The nearest-rank percentile of sorted values: the smallest with `fraction` of them at or below it. */
export const percentile = (sorted: ReadonlyArray<number>, fraction: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!

/** The median (of an even count, the mean of the middle two). */
export const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** The middle one of a few figures (the median, for an odd count; the upper middle for an even one). */
export const middleOf = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/**
 * A distribution-free 95% confidence interval for the median of `values` (the sign test's: the
 * k-th smallest and k-th largest, for the largest k with P(Binomial(n, ½) < k) ≤ 2.5%), or
 * undefined with fewer than 6 values, where no such k exists.
 */
export const medianInterval = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const n = sorted.length
  let probability = 0.5 ** n // P(X = 0)
  let below = 0 // P(X < k)
  let k = 0
  while (below + probability <= 0.025) {
    below += probability
    probability *= (n - k) / (k + 1)
    k += 1
  }
  return k === 0 ? undefined : { low: sorted[k - 1]!, high: sorted[n - k]!, coverage: 1 - 2 * below }
}
