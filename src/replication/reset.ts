/**
 * Emptying a replica's raft directory so that it is rebuilt from the other replicas (the
 * self-healing path, see docs/replication.md "Self-healing of partition replicas"). The
 * `recovering` marker it leaves is read by `RaftLogStorage.open`.
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fsyncDir, unlinkIfExists } from '../log/fsutil.js'
import { decodeHardState } from '../raft/index.js'
import { readStateFile, StateKind, writeStateFile } from './statefile.js'

/**
 * Empties the replica directory `dir` (closed) so the replica restarts with no log, to be
 * rebuilt from the other replicas (a leader sends it a snapshot): writes the `recovering`
 * marker first (durably), then removes the raft log, the snapshot and the configuration. The
 * hard state (term and vote) is kept when it is readable, so a vote given before is not
 * given twice; the marker keeps the replica from voting or campaigning until a leader has
 * caught it up, so its lost acknowledgements cannot help elect a leader missing committed
 * entries. Idempotent: a crash in the middle is finished by calling it again.
 */
export async function resetReplicaLog(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  await writeStateFile(join(dir, 'recovering'), StateKind.recovering, new Uint8Array(0))
  const hs = join(dir, 'hardstate')
  const readable = await readStateFile(hs, StateKind.hardState)
    .then((b) => b !== undefined && decodeHardState(b) !== undefined)
    .catch(() => false)
  if (!readable) await unlinkIfExists(hs)
  for (const f of ['snapshot', 'confstate']) {
    await unlinkIfExists(join(dir, f))
    await unlinkIfExists(join(dir, `${f}.tmp`))
  }
  await rm(join(dir, 'log'), { recursive: true, force: true })
  await fsyncDir(dir)
}
