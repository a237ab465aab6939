/**
 * mulberry32: a tiny seeded PRNG, the one implementation shared by the fault runner's
 * schedules and the tests (test/helpers/rng.ts re-exports it). Pure, no Node imports.
 */

/** A seeded PRNG (mulberry32) returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
