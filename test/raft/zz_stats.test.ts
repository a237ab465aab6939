import { it } from 'vitest'
import { runSchedule } from './schedules.js'
it('stats', () => {
  const n = Number(process.env.N ?? 300)
  let fails = 0
  let first = ''
  const t0 = Date.now()
  for (const size of [3, 5]) {
    for (let s = 0; s < n; s++) {
      try { runSchedule(s + 100000, size, Number(process.env.ROUNDS ?? 300)) } catch (e) { fails++; if (!first) first = (e as Error).message }
    }
  }
  console.log('RESULT fails', fails, 'of', 2 * n, first, Date.now() - t0, 'ms')
})
