/**
 * Imported first by the library's entry (`src/index.ts`), before anything that loads
 * libp2p: on a Node.js older than `MIN_NODE_MAJOR` importing `plexus` throws one clear
 * `Error` ("plexus needs Node.js 22 or newer; this is v20.x") instead of failing later
 * inside libp2p. Its `stack` is that line alone. When nothing catches it (a script that
 * imports `plexus` at its top), the process prints that line on stderr and exits 1 rather
 * than Node's report of an uncaught exception; the hook that does so is removed on the next
 * macrotask, so a caller that catches the error keeps Node's usual handling of others.
 */
import { runtimeProblem } from './runtime.js'

const problem = runtimeProblem()
if (problem !== undefined) {
  const err = new Error(problem)
  err.stack = `Error: ${problem}`
  const onUncaught = (e: unknown) => {
    process.off('uncaughtException', onUncaught)
    if (e !== err) throw e
    process.stderr.write(`${problem}\n`)
    process.exit(1)
  }
  process.on('uncaughtException', onUncaught)
  setTimeout(() => process.off('uncaughtException', onUncaught), 0).unref()
  throw err
}
