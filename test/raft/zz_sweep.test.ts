import { it } from 'vitest'
import { runMembership, runSchedule } from './schedules.js'
it('sweep', () => {
  const start = Number(process.env.START ?? 200000), n = Number(process.env.N ?? 1000)
  const fails: string[] = []
  for (let s = start; s < start + n; s++) {
    for (const f of [() => runSchedule(s, 3, 300), () => runSchedule(s, 5, 300), () => runMembership(s, 300)]) {
      try { f() } catch (e) { fails.push((e as Error).message.slice(0, 200)) }
    }
  }
  console.log('SWEEP', fails.length, JSON.stringify(fails.slice(0, 10)))
}, 3_600_000)
