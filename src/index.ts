/**
 * Plexus public API: interfaces, factory functions and error classes, all exported by name.
 */
export * from './errors.js'
export type * from './types.js'
export { generateKey } from './util/keys.js'
