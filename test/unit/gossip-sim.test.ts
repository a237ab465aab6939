/**
 * The seeded gossip simulation (bench/gossip-sim.ts) at small N: a join reaches every live
 * node, a crash is declared dead by every live node within seconds, and with message loss
 * no live node is declared dead (suspicions of live nodes are refuted), with bounded
 * messages per node; a node that stalls now and then (local health) declares no live peer
 * dead and refutes the suspicions of itself. The seed is printed; TEST_SEED replays. `npm run sim` prints the
 * full table (N up to 10,000).
 */
import { describe, expect, it } from 'vitest'
import { simulate, table } from '../../bench/gossip-sim.js'
import { testSeed } from '../helpers/rng.js'

const seed = testSeed()
console.log(`gossip sim seed ${seed} (TEST_SEED=${seed} to replay)`)

describe('gossip simulation', () => {
  it('a node that stalls 4 s in every 10 s declares no live peer dead and is not declared dead', () => {
    const r = simulate({ n: 300, degree: 8, loss: 0.05, seed, slowNode: true })
    console.log(table([r], 0.05).join('\n'))
    expect(r.falseDeaths).toBe(0)
    expect(r.falseSuspicions).toBeGreaterThan(0) // its neighbours did suspect it while it stalled
    expect(r.deadMissing).toBe(0)
    expect(r.joinMissing).toBe(0)
  })

  for (const [n, degree, loss] of [
    [300, 8, 0.05],
    [500, 24, 0.1],
  ] as const) {
    it(`N=${n}, ${degree} links per node, ${loss * 100}% loss: join and crash seen by all, no false death`, () => {
      const r = simulate({ n, degree, loss, seed })
      console.log(table([r], loss).join('\n'))
      expect(r.joinMissing).toBe(0)
      expect(r.deadMissing).toBe(0)
      expect(r.falseDeaths).toBe(0)
      // Detection (3.5 s of silence) + probe + suspicion timeout (min 2 × log10 N s, max 3×).
      expect(r.deadAllMs).toBeLessThan(3500 + 1500 + 3 * 2 * Math.log10(n) * 1000 + 1000)
      expect(r.linksPerNode).toBeLessThanOrEqual(degree + 1)
      expect(r.msgsPerNodePerSec).toBeLessThan(20)
    })
  }
})
