/**
 * A histogram cheap enough for hot paths: `observe` is a short scan over the bucket bounds
 * and three additions, with no label hashing (prom-client's `Histogram.observe` hashes its
 * labels on every call). The series are exposed through a metric object registered in a
 * prom-client `Registry`, read at scrape time in Prometheus's histogram shape.
 */
import type { Registry } from 'prom-client'

/** One series: counts per bucket (not cumulative; the last one is +Inf), sum and count. */
export class Buckets {
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1)
  }

  /** Records one value. */
  observe(v: number): void {
    const b = this.bounds
    let i = 0
    while (i < b.length && v > b[i]!) i++
    this.counts[i]!++
    this.sum += v
    this.count++
  }
}

/** A sample as prom-client's registry formats it. */
interface Sample {
  labels: Record<string, string | number>
  value: number
  metricName: string
}

/**
 * Registers a histogram named `name` in `registry` whose series are whatever `series()`
 * returns at scrape time (labels and their `Buckets`).
 */
export function registerHistogram(
  registry: Registry,
  name: string,
  help: string,
  series: () => Iterable<[labels: Record<string, string>, buckets: Buckets]>,
): void {
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const values: Sample[] = []
      for (const [labels, h] of series()) {
        let acc = 0
        for (let i = 0; i <= h.bounds.length; i++) {
          acc += h.counts[i]!
          const le = i < h.bounds.length ? h.bounds[i]! : '+Inf'
          values.push({ labels: { ...labels, le }, value: acc, metricName: `${name}_bucket` })
        }
        values.push({ labels, value: h.sum, metricName: `${name}_sum` })
        values.push({ labels, value: h.count, metricName: `${name}_count` })
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' }
    },
    reset: () => {},
  }
  registry.registerMetric(metric as never)
}
