/**
 * The version `plexus --version` prints: the `version` of the package the CLI belongs to,
 * read from the nearest package.json named `plexus` above this file (dist/src/cli/ when
 * built, src/cli/ under the test runner).
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The package version, or `unknown` when no plexus package.json is found. */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: unknown
        version?: unknown
      }
      if (pkg.name === 'plexus' && typeof pkg.version === 'string') return pkg.version
    } catch {
      // none here
    }
    const up = dirname(dir)
    if (up === dir) break
    dir = up
  }
  return 'unknown'
}
