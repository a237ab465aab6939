/** The hot-path histogram of src/observe/histogram.ts in Prometheus's exposition format. */
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { Buckets, registerHistogram } from '../../src/observe/histogram.js'

describe('Buckets', () => {
  it('counts per bucket (a value on a bound falls in it), sums, and exposes cumulative buckets', async () => {
    const h = new Buckets([0.1, 1])
    for (const v of [0.05, 0.1, 0.5, 1, 2, 3]) h.observe(v)
    expect([...h.counts]).toEqual([2, 2, 2])
    expect(h.count).toBe(6)
    expect(h.sum).toBeCloseTo(6.65)
    const reg = new Registry()
    registerHistogram(reg, 'x_seconds', 'help text', () => [[{ cluster: 'a' }, h]])
    const text = await reg.metrics()
    expect(text).toContain('# TYPE x_seconds histogram')
    expect(text).toContain('x_seconds_bucket{cluster="a",le="0.1"} 2')
    expect(text).toContain('x_seconds_bucket{cluster="a",le="1"} 4')
    expect(text).toContain('x_seconds_bucket{cluster="a",le="+Inf"} 6')
    expect(text).toContain('x_seconds_count{cluster="a"} 6')
    expect(text).toMatch(/x_seconds_sum\{cluster="a"\} 6\.65/)
  })
})
