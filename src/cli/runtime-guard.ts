/**
 * Imported first by the CLI's entry (`main.ts`), before commander or anything that loads
 * libp2p: on a Node.js older than `MIN_NODE_MAJOR` it prints one line on stderr
 * ("plexus needs Node.js 22 or newer; this is v20.x") and exits 1.
 */
import { writeSync } from 'node:fs'
import { runtimeProblem } from '../runtime.js'

const problem = runtimeProblem()
if (problem !== undefined) {
  try {
    writeSync(2, `${problem}\n`)
  } catch {
    // stderr closed: the exit code still says it failed
  }
  process.exit(1)
}
