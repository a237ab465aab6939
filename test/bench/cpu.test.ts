/**
 * The bench's CPU accounting and pinning (bench/cpu.ts): /proc stat parsing, CPU read from
 * /proc against Node's own count, a child's CPU summed and lost, CPU lists, the `--cpus`
 * check, taskset's arguments, and a pinned process whose children inherit the cores.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import {
  allowedCores,
  chooseCores,
  clockTicks,
  cpuSince,
  cpuSnapshot,
  idleCpu,
  parseCpuList,
  parseStatTicks,
  pinSelf,
  processCpuUs,
  TASKSET_MISSING,
  tasksetArgs,
} from '../../bench/cpu.js'
import { findExecutable } from '../../bench/util.js'

/** Spins until this process has used `ms` of CPU (wall time varies with the machine's load). */
const busy = (ms: number) => {
  const u0 = process.cpuUsage()
  let x = 0
  for (;;) {
    for (let i = 0; i < 10_000; i++) x += Math.sqrt(x + i)
    const u = process.cpuUsage(u0)
    if (u.user + u.system >= ms * 1000) return x
  }
}

/** Two clock ticks of /proc resolution, plus slack for the reads themselves. */
const tickUs = () => (2 * 1e6) / clockTicks() + 5000

describe('CPU time from /proc', () => {
  it('parses utime + stime after the last parenthesis, whatever the command name holds', () => {
    const tail = 'S 1 2 3 0 -1 4194304 99 0 0 0 17 23 0 0 20 0 1 0 1226151 3133440 382'
    expect(parseStatTicks(`42 (node) ${tail}`)).toBe(40)
    expect(parseStatTicks(`42 (a b) c) ) ${tail}`)).toBe(40)
    expect(parseStatTicks('42 node S 1 2')).toBeUndefined()
    expect(parseStatTicks('42 (node) S 1 2 3')).toBeUndefined()
  })

  it("reads this process's CPU time as Node counts it, within the ticks' resolution", () => {
    const u0 = process.cpuUsage()
    const p0 = processCpuUs(process.pid)!
    busy(300)
    const p1 = processCpuUs(process.pid)!
    const u = process.cpuUsage(u0)
    const node = u.user + u.system
    expect(node).toBeGreaterThanOrEqual(300_000)
    expect(Math.abs(p1 - p0 - node)).toBeLessThan(tickUs())
    expect(processCpuUs(2 ** 30)).toBeUndefined()
  })

  it("sums a child's CPU over a window, and gives NaN once a process of the window is gone", async () => {
    const child: ChildProcess = spawn(
      process.execPath,
      [
        '-e',
        `process.stdin.on('data', () => { const u0 = process.cpuUsage(); let u; do u = process.cpuUsage(u0); while (u.user + u.system < 200000); console.log('DONE') }); console.log('READY')`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    )
    try {
      const lines = (async function* () {
        for await (const chunk of child.stdout!) yield String(chunk)
      })()
      expect((await lines.next()).value).toMatch(/READY/)
      const start = cpuSnapshot([child.pid, process.pid, child.pid, undefined])
      expect([...start.keys()]).toEqual([child.pid, process.pid])
      child.stdin!.write('go\n')
      expect((await lines.next()).value).toMatch(/DONE/)
      // At least the child's 200 ms of CPU (its loop counts CPU time, not wall time).
      const used = cpuSince(start)
      expect(used).toBeGreaterThan(200_000 - tickUs())
      child.kill('SIGKILL')
      await once(child, 'exit')
      expect(cpuSince(start)).toBeNaN()
      expect(cpuSince(new Map())).toBeNaN()
    } finally {
      child.kill('SIGKILL')
    }
  })
})

describe('idle CPU', () => {
  it('is CPU ms per second of wall time: near 0 for a process that only waits', async () => {
    const child = spawn(process.execPath, ['-e', "console.log('READY'); setTimeout(() => {}, 60000)"], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      await once(child.stdout!, 'data') // past its start-up
      const v = await idleCpu([child.pid], 1000)
      expect(v).toBeGreaterThanOrEqual(0)
      // One tick (10 ms) at each end at most, plus a timer's wake-up.
      expect(v).toBeLessThan(40)
    } finally {
      child.kill('SIGKILL')
    }
  })
})

describe('--cpus', () => {
  it('parses CPU lists', () => {
    expect(parseCpuList('0')).toEqual([0])
    expect(parseCpuList('0-3,6,8-9\n')).toEqual([0, 1, 2, 3, 6, 8, 9])
    expect(parseCpuList('2,0-1,1')).toEqual([0, 1, 2])
    for (const bad of ['', 'a', '3-1', '0,,1', '-1']) expect(() => parseCpuList(bad), bad).toThrow(/CPU list/)
    expect(allowedCores().length).toBeGreaterThan(0)
  })

  it('takes the first N allowed cores and refuses what cannot be pinned', () => {
    expect(chooseCores('1', [2, 5, 7])).toEqual([2])
    expect(chooseCores('3', [2, 5, 7])).toEqual([2, 5, 7])
    expect(() => chooseCores('4', [2, 5, 7])).toThrow(/--cpus 4: this process may only use 3 cores \(2,5,7\)/)
    for (const bad of ['0', '-1', '1.5', 'two', ''])
      expect(() => chooseCores(bad, [0, 1]), bad).toThrow(/--cpus must be a whole number/)
  })

  it('builds taskset arguments that pin every thread of a pid', () => {
    expect(tasksetArgs([0], 123)).toEqual(['-a', '-p', '-c', '0', '123'])
    expect(tasksetArgs([0, 2, 3], 9)).toEqual(['-a', '-p', '-c', '0,2,3', '9'])
    expect(() => tasksetArgs([], 9)).toThrow(/cores/)
    expect(() => tasksetArgs([-1], 9)).toThrow(/cores/)
  })

  it('refuses without taskset, saying why', () => {
    expect(() => pinSelf([0], () => undefined)).toThrow(TASKSET_MISSING)
  })

  it.runIf(findExecutable('taskset') !== undefined)(
    'pins a process to one core; the children it spawns afterwards inherit it',
    () => {
      const core = allowedCores().at(-1)!
      const script = `
        const { pinSelf, allowedCores } = await import(${JSON.stringify(new URL('../../dist/bench/cpu.js', import.meta.url).href)})
        pinSelf([${core}])
        const { execFileSync } = await import('node:child_process')
        const child = execFileSync('grep', ['Cpus_allowed_list', '/proc/self/status'], { encoding: 'utf8' })
        console.log(JSON.stringify({ self: allowedCores(), child: child.split(':')[1].trim() }))`
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
      expect(r.stderr).toBe('')
      expect(JSON.parse(r.stdout)).toEqual({ self: [core], child: String(core) })
    },
  )

  it('npm run bench and plexus bench refuse a --cpus they cannot honour, with one line and exit 2', () => {
    const run = new URL('../../dist/bench/run.js', import.meta.url).pathname
    const cli = new URL('../../dist/src/cli/main.js', import.meta.url).pathname
    for (const [v, args] of [
      ['0', [run]],
      ['999', [run]],
      ['x', [cli, 'bench']],
    ] as const) {
      const r = spawnSync(process.execPath, [...args, '--cpus', v, '--only', 'request'], { encoding: 'utf8' })
      expect(r.status, v).toBe(2)
      expect(r.stderr.trim().split('\n'), v).toHaveLength(1)
      expect(r.stderr).toMatch(/^bench: --cpus/)
    }
  })
})
