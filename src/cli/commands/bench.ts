/**
 * `plexus bench [options]`: runs the benchmarks (`bench/run.ts`, built next to the CLI in
 * dist/) in a child process with the same Node runtime, passing the options through, e.g.
 * `plexus bench --only request --quick`, `plexus bench --cpus 1` (every process of both systems
 * pinned to one core). See docs/benchmarks.md for what it measures.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import { UsageError } from '../output.js'

/** Path of the compiled bench entry point (dist/bench/run.js). */
export function benchEntry(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bench', 'run.js')
}

/** Registers the `bench` command on `program`. */
export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('run the benchmarks beside NATS (see docs/benchmarks.md); options go to the bench')
    .allowUnknownOption(true)
    .helpOption(false)
    .argument('[options...]', 'bench options, e.g. --only request --quick --cpus 1')
    .action(async (args: string[]) => {
      const entry = benchEntry()
      if (!existsSync(entry))
        throw new UsageError(`the benchmarks are not built (${entry} is missing): run npm run build`)
      const child = spawn(process.execPath, [entry, ...args], { stdio: 'inherit' })
      const code = await new Promise<number>((resolve) =>
        child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))),
      )
      process.exitCode = code
    })
}
