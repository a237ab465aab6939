/**
 * The Node.js version check shared by the library's and the CLI's entry guards. It imports
 * nothing: the guards run it before any module that loads libp2p is evaluated (libp2p v3
 * calls `Promise.withResolvers`, which Node.js 20 lacks, and dies with a stack trace).
 */

/** Oldest Node.js major version Plexus runs on (libp2p v3's floor; package.json `engines`). */
export const MIN_NODE_MAJOR = 22

/**
 * The one-line reason this runtime cannot run Plexus, or undefined when it can.
 * `version` is a Node.js version such as `20.20.2` or `v20.20.2` (default: this process's).
 */
export function runtimeProblem(version: string = process.versions.node): string | undefined {
  const major = Number(/^v?(\d+)\./.exec(version)?.[1])
  if (Number.isInteger(major) && major >= MIN_NODE_MAJOR) return undefined
  const v = version.startsWith('v') ? version : `v${version}`
  return `plexus needs Node.js ${MIN_NODE_MAJOR} or newer; this is ${v}`
}
