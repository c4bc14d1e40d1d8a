/**
 * A latency histogram in microseconds: exact below 100 µs, then buckets 1 % wide, so percentiles
 * are within 1 % of the truth whatever the range. Mergeable across processes.
 */
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
