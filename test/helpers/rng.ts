/**
 * Seeded randomness for tests: mulberry32. The seed comes from TEST_SEED when set, else
 * from the clock; tests print it on failure so a run can be replayed.
 */

/** A seeded PRNG returning floats in [0, 1) (one implementation, shared with faults/). */
export { mulberry32 } from '../../faults/prng.js'

/** The seed of this run (TEST_SEED or time based). */
export function testSeed(): number {
  const env = process.env.TEST_SEED
  return env ? Number(env) : Date.now() % 2 ** 31
}

/** Random bytes from a PRNG. */
export function randomBytesFrom(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256)
  return out
}
