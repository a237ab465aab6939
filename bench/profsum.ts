/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`, e.g. `npm run bench -- --profile DIR`):
 * top functions by self time, and self time by package/file.
 *
 *   node dist/bench/profsum.js FILE.cpuprofile [--top 25] [--from MS] [--to MS] [--inclusive]
 *
 * `--from MS` ignores samples in the first MS milliseconds (start-up, discovery), `--to MS`
 * those after MS. `--inclusive` also lists the project's own functions (src/, relay/) by
 * total time (self plus callees).
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '25' },
    from: { type: 'string', default: '0' },
    to: { type: 'string' },
    inclusive: { type: 'boolean', default: false },
  },
})

function where(url: string): string {
  if (!url) return '(native)'
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!
  }
  const d = url.indexOf('/dist/')
  if (d >= 0) return url.slice(d + 6)
  return url.replace(/^.*\//, '')
}

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const self = new Map<number, number>()
  let t = 0
  let total = 0
  const from = Number(values.from) * 1000
  const to = values.to === undefined ? Number.POSITIVE_INFINITY : Number(values.to) * 1000
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0
    if (t < from || t > to) continue
    const dt = p.timeDeltas[i] ?? 0
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt)
    total += dt
  }
  const fn = new Map<string, number>()
  const pkg = new Map<string, number>()
  for (const [id, us] of self) {
    const n = byId.get(id)!
    const cf = n.callFrame
    const key = `${cf.functionName || '(anonymous)'}  ${where(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`
    fn.set(key, (fn.get(key) ?? 0) + us)
    const k = ['(idle)', '(garbage collector)', '(program)'].includes(cf.functionName)
      ? cf.functionName
      : where(cf.url)
    pkg.set(k, (pkg.get(k) ?? 0) + us)
  }
  const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)}%`
  console.log(`\n${file}: ${(total / 1e6).toFixed(2)} s sampled`)
  console.log('  by package/file:')
  for (const [k, us] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, 14)) console.log(`   ${pct(us)}  ${k}`)
  console.log('  top functions (self):')
  for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)))
    console.log(`   ${pct(us)}  ${k}`)
  if (values.inclusive) {
    // Total time: each sampled node's self time counts once for every distinct function on its stack.
    const parent = new Map<number, number>()
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
    const incl = new Map<string, number>()
    for (const [id, us] of self) {
      const seen = new Set<string>()
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const cf = byId.get(cur)!.callFrame
        const w = where(cf.url)
        if (!w.startsWith('src/') && !w.startsWith('relay/')) continue
        const key = `${cf.functionName || '(anonymous)'}  ${w}:${cf.lineNumber + 1}`
        if (seen.has(key)) continue
        seen.add(key)
        incl.set(key, (incl.get(key) ?? 0) + us)
      }
    }
    console.log('  project functions (total, with callees):')
    for (const [k, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)))
      console.log(`   ${pct(us)}  ${k}`)
  }
}
