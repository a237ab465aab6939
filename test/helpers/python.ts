/**
 * The Python client's tests (test/python/) run python3 against real nodes: this says
 * whether they can, and where the package is for PYTHONPATH (it is imported, not installed).
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** The interpreter: `PLEXUS_TEST_PYTHON` (to test another version), else `python3`. */
export const python = process.env.PLEXUS_TEST_PYTHON || 'python3'

/** clients/python: put on PYTHONPATH to import `plexus_relay`. */
export const pythonPackageDir = fileURLToPath(new URL('../../clients/python/', import.meta.url))

/** The environment a Python test process runs with: the package importable, no .pyc files written. */
export const pythonEnv = { ...process.env, PYTHONPATH: pythonPackageDir, PYTHONDONTWRITEBYTECODE: '1' }

/** Why the Python tests cannot run here, or undefined when python3 >= 3.9 is found. */
export function pythonMissing(): string | undefined {
  const r = spawnSync(python, ['-c', 'import sys; print(sys.version_info[0], sys.version_info[1])'])
  if (r.status !== 0) return `${python} is not installed`
  const [major = 0, minor = 0] = String(r.stdout).trim().split(' ').map(Number)
  if (major < 3 || (major === 3 && minor < 9)) return `${python} is ${major}.${minor}, the client needs 3.9+`
  return undefined
}
