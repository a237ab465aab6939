/**
 * Commit log benchmark: 1 KB records, append and read throughput, against the raw sequential
 * write rate of the same disk measured in the same run. Run `node dist/bench/log.js [--quick]`
 * after `npm run build`, or call `runLogBench()` from the bench runner.
 */
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { type AppendRecord, openLog } from '../src/log/index.js'

/** One measured figure. */
export interface BenchResult {
  name: string
  value: number
  unit: string
  note?: string
}

const MB = 1024 * 1024
const RECORD = 1024

function payload(n: number): Uint8Array {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff
  return b
}

/** Raw sequential write: 1 MiB writes to a fresh file, then one fdatasync (all timed). */
async function rawWrite(dir: string, totalMB: number): Promise<number> {
  const fh = await open(join(dir, 'raw.bin'), 'w')
  const chunk = payload(MB)
  const t0 = performance.now()
  for (let i = 0; i < totalMB; i++) await fh.write(chunk, 0, MB, i * MB)
  await fh.datasync()
  const secs = (performance.now() - t0) / 1000
  await fh.close()
  await rm(join(dir, 'raw.bin'))
  return totalMB / secs
}

/** fsync 'never': `total` 1 KB records in batches of `batch`, `inflight` appends pipelined, then a flush. */
async function appendNever(dir: string, total: number, batch: number, inflight: number) {
  const log = await openLog({ dir, fsync: 'never' })
  const value = payload(RECORD)
  const records: AppendRecord[] = Array.from({ length: batch }, () => ({ value }))
  const t0 = performance.now()
  let issued = 0
  const worker = async () => {
    while (issued < total) {
      issued += batch
      await log.append(records)
    }
  }
  await Promise.all(Array.from({ length: inflight }, worker))
  await log.flush()
  const secs = (performance.now() - t0) / 1000
  const st = log.stats()
  await log.close()
  return { msgs: st.records / secs, mbps: st.bytes / MB / secs, records: st.records, writes: st.writes }
}

/** fsync 'always': `appenders` loops of single-record appends for `ms`. */
async function appendAlways(dir: string, appenders: number, ms: number) {
  const log = await openLog({ dir, fsync: 'always' })
  const rec: AppendRecord[] = [{ value: payload(RECORD) }]
  const t0 = performance.now()
  const deadline = t0 + ms
  const worker = async () => {
    while (performance.now() < deadline) await log.append(rec)
  }
  await Promise.all(Array.from({ length: appenders }, worker))
  const secs = (performance.now() - t0) / 1000
  const st = log.stats()
  await log.close()
  return { rate: st.appends / secs, perFsync: st.appendsPerFsync }
}

/** Sequential read of the whole log with a 1 MiB budget per call. */
async function readAll(dir: string) {
  const log = await openLog({ dir, fsync: 'never' })
  const t0 = performance.now()
  let next = 0
  let n = 0
  let bytes = 0
  for (;;) {
    const rs = await log.read(next, { maxBytes: MB })
    if (rs.length === 0) break
    n += rs.length
    for (const r of rs) bytes += r.value.length
    next = rs[rs.length - 1]!.offset + 1
  }
  const secs = (performance.now() - t0) / 1000
  await log.close()
  return { msgs: n / secs, mbps: bytes / MB / secs }
}

/** Runs every measurement (each bounded to a few seconds) and returns the figures. */
export async function runLogBench(opts: { quick?: boolean } = {}): Promise<BenchResult[]> {
  const quick = opts.quick ?? false
  const root = await mkdtemp(join(tmpdir(), 'plexus-bench-log-'))
  const out: BenchResult[] = []
  try {
    // fsync-bound runs first, while the disk holds no dirty pages from the bulk runs below.
    const ms = quick ? 1000 : 2500
    for (const c of [1, 8, 64]) {
      const a = await appendAlways(join(root, `always${c}`), c, ms)
      out.push({
        name: `append fsync:'always' 1 KB, ${c} concurrent appender${c > 1 ? 's' : ''}`,
        value: a.rate,
        unit: 'appends/s',
        note: `${a.perFsync.toFixed(1)} appends/fsync`,
      })
    }
    // The disk's rate drifts (shared, virtualised): raw and log runs alternate, three of each,
    // and the medians are compared.
    const totalMB = quick ? 128 : 256
    const n = totalMB * 1024
    const raws: number[] = []
    const nevers: Array<Awaited<ReturnType<typeof appendNever>>> = []
    for (let round = 0; round < 3; round++) {
      raws.push(await rawWrite(root, totalMB))
      if (round > 0) await rm(join(root, 'never'), { recursive: true, force: true })
      nevers.push(await appendNever(join(root, 'never'), n, 64, 16))
    }
    const raw = median(raws)
    const never = nevers.slice().sort((x, y) => x.mbps - y.mbps)[1]!
    out.push({
      name: 'raw sequential write (1 MiB writes + fdatasync)',
      value: raw,
      unit: 'MB/s',
      note: `median of ${raws.map((x) => x.toFixed(0)).join(', ')}`,
    })
    out.push({ name: "append fsync:'never' 1 KB, 64/append, 16 in flight", value: never.msgs, unit: 'msg/s' })
    out.push({
      name: "append fsync:'never' 1 KB throughput",
      value: never.mbps,
      unit: 'MB/s',
      note: `${((never.mbps / raw) * 100).toFixed(0)}% of raw (median of ${nevers.map((x) => x.mbps.toFixed(0)).join(', ')}); ${(never.records / never.writes).toFixed(0)} records/write`,
    })
    const single = await appendNever(join(root, 'single'), quick ? 50_000 : 200_000, 1, 256)
    out.push({
      name: "append fsync:'never' 1 KB, 1/append, 256 in flight",
      value: single.msgs,
      unit: 'msg/s',
      note: `${single.mbps.toFixed(0)} MB/s`,
    })
    const rd = await readAll(join(root, 'never'))
    out.push({
      name: 'read 1 KB records (1 MiB per read, page cache)',
      value: rd.msgs,
      unit: 'msg/s',
      note: `${rd.mbps.toFixed(0)} MB/s`,
    })
  } finally {
    await rm(root, { recursive: true, force: true })
  }
  return out
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

function printTable(rows: BenchResult[]): void {
  const w = Math.max(...rows.map((r) => r.name.length))
  for (const r of rows) {
    const v = r.value >= 100 ? Math.round(r.value).toLocaleString('en-US') : r.value.toFixed(1)
    console.log(`${r.name.padEnd(w)}  ${v.padStart(12)} ${r.unit.padEnd(10)} ${r.note ?? ''}`)
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await runLogBench({ quick: process.argv.includes('--quick') })
  printTable(rows)
}
