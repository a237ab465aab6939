import { describe, expect, it } from 'vitest'
import { decideGcTuning, GC_SOFT_TRIGGER_FLAG, type GcTuningHost, tuneGc } from '../../src/util/gc-tuning.js'

const host = (over: Partial<GcTuningHost> = {}) => {
  const set: string[] = []
  const h: GcTuningHost = {
    v8Version: '12.4.254.21-node.57',
    execArgv: [],
    nodeOptions: undefined,
    setFlags: (f) => set.push(f),
    ...over,
  }
  return { h, set }
}

describe('gc tuning', () => {
  it('sets the soft marking trigger on the V8 versions that have it', () => {
    for (const v8Version of ['12.4.254.21-node.57', '13.6.233.10-node.18']) {
      const { h, set } = host({ v8Version })
      expect(tuneGc(h)).toBe('applied')
      expect(set).toEqual([`${GC_SOFT_TRIGGER_FLAG}=80`])
    }
  })

  it('leaves V8 alone when the process chose a marking trigger or V8 is unknown', () => {
    const cases: Array<[Partial<GcTuningHost>, string]> = [
      [{ execArgv: ['--incremental-marking-soft-trigger=50'] }, 'user-set'],
      [{ execArgv: ['--incremental_marking_hard_trigger=90'] }, 'user-set'],
      [{ nodeOptions: '--max-old-space-size=512 --incremental-marking-soft-trigger=70' }, 'user-set'],
      [{ v8Version: '11.3.244.8-node.25' }, 'unknown-v8'],
      [{ v8Version: '14.1.0' }, 'unknown-v8'],
    ]
    for (const [over, why] of cases) {
      const { h, set } = host(over)
      expect(tuneGc(h), JSON.stringify(over)).toBe(why)
      expect(set).toEqual([])
    }
    // other flags do not count as a choice
    expect(decideGcTuning(host({ execArgv: ['--max-semi-space-size=4'], nodeOptions: '--inspect' }).h)).toBe(
      'applied',
    )
  })

  it('this process: decided once, then "already"', () => {
    const first = tuneGc()
    expect(['applied', 'user-set', 'unknown-v8']).toContain(first)
    expect(tuneGc()).toBe('already')
  })
})
