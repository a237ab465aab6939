/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`, e.g. `npm run bench -- --profile DIR`):
 * top functions by self time, and self time by package/file.
 *
 *   node dist/bench/profsum.js FILE.cpuprofile [--top 25] [--from MS]
 *
 * `--from MS` ignores samples in the first MS milliseconds (start-up, discovery).
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
  options: { top: { type: 'string', default: '25' }, from: { type: 'string', default: '0' } },
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
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0
    if (t < from) continue
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
}
