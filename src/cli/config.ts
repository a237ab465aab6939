/**
 * `plexus node --config FILE`: the node's flags from a YAML or JSON file, and from
 * `PLEXUS_*` environment variables. Keys are derived from the command's own option
 * definitions, so every flag (including ones added later) has a key with no list to keep:
 * - file key: the option's attribute name, the long flag in camelCase (`--relay-port` →
 *   `relayPort`; `--no-mdns` → `mdns: false`); a repeatable flag takes a list;
 * - environment variable: `PLEXUS_` + the key in upper snake case (`PLEXUS_RELAY_PORT`,
 *   `PLEXUS_MDNS=false`); lists are comma-separated;
 * - the `--join` group flags go in `join: [{ cluster, clusterKeyFile, exec, ... }]` (file only).
 * Precedence: defaults < file < flags < environment. Values go through the same parsers as
 * the flags; a bad one is refused naming the file (or variable) and the key. Relative paths
 * in the file (options whose argument is `<file>` or `<dir>`) are taken from the file's
 * directory.
 */
import { readFile } from 'node:fs/promises'
import { dirname, extname, resolve } from 'node:path'
import type { Command, Option } from 'commander'
import { describe } from '../util/validate.js'
import { type JoinFlag, type JoinGroup, JoinGroups } from './join-groups.js'
import { UsageError } from './output.js'

/** Largest config file read (bytes). */
const MAX_CONFIG_FILE = 1024 * 1024
/** Options about the config itself: never read from the file or the environment. */
const META_OPTIONS = new Set(['config', 'printConfig'])
/** Prefix of the environment variables that set node options. */
const ENV_PREFIX = 'PLEXUS_'

/** The file key (and attribute name) of a commander option. */
export function configKey(opt: Option): string {
  return opt.attributeName()
}

/** The environment variable that sets `key` (`relayPort` → `PLEXUS_RELAY_PORT`). */
export function envName(key: string): string {
  return ENV_PREFIX + key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()
}

/** Whether the option's value is a path (its argument is written `<file>` or `<dir>`). */
function isPath(opt: Option): boolean {
  return /<(file|dir)>/.test(opt.flags)
}

/** Whether the option takes no argument (`--echo`, `--no-mdns`). */
function isSwitch(opt: Option): boolean {
  return !opt.required && !opt.optional
}

/** Where the key lives: at the top of the file, or in each `join` entry. */
export interface ConfigSchema {
  /** Top-level keys and their options. */
  top: Map<string, Option>
  /** Keys of a `join` entry (`cluster` is `--join`'s value) and their options. */
  join: Map<string, Option>
}

/** Derives the file schema from the options of `cmd`; `joinFlags` are the group flags. */
export function configSchema(cmd: Command, joinFlags: readonly string[]): ConfigSchema {
  const top = new Map<string, Option>()
  const join = new Map<string, Option>()
  for (const opt of cmd.options) {
    const key = configKey(opt)
    if (META_OPTIONS.has(key)) continue
    const flag = opt.long?.replace(/^--/, '') ?? ''
    if (joinFlags.includes(flag)) join.set(flag === 'join' ? 'cluster' : key, opt)
    else top.set(key, opt)
  }
  return { top, join }
}

/** Reads and parses a config file: a mapping of keys (YAML, or JSON by extension or content). */
export async function loadConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    const buf = await readFile(file)
    if (buf.length > MAX_CONFIG_FILE)
      throw new UsageError(`--config ${file}: file is ${buf.length} bytes, more than ${MAX_CONFIG_FILE}`)
    text = buf.toString('utf8')
  } catch (err) {
    if (err instanceof UsageError) throw err
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code
    throw new UsageError(`--config ${file}: cannot read: ${why ?? (err as Error).message}`)
  }
  const ext = extname(file).toLowerCase()
  const json = ext === '.json' || (ext !== '.yaml' && ext !== '.yml' && /^\s*\{/.test(text))
  let data: unknown
  try {
    data = json ? JSON.parse(text) : (await import('yaml')).parse(text)
  } catch (err) {
    const first = String((err as Error).message).split('\n')[0]
    throw new UsageError(`${file}: not valid ${json ? 'JSON' : 'YAML'}: ${first}`)
  }
  if (data === null || data === undefined) return {}
  if (typeof data !== 'object' || Array.isArray(data))
    throw new UsageError(
      `${file}: must be a mapping of keys (such as relayPort: 55555), got ${describe(data)}`,
    )
  return data as Record<string, unknown>
}

/** Runs the option's own parser on `text`, renaming the flag in its error to `where`. */
function parseWith(opt: Option, text: string, previous: unknown, where: string): unknown {
  if (opt.argChoices && !opt.argChoices.includes(text))
    throw new UsageError(`${where} must be one of ${opt.argChoices.join(', ')}, got ${describe(text)}`)
  if (!opt.parseArg) return text
  try {
    return opt.parseArg(text, previous)
  } catch (err) {
    const msg = String((err as Error).message)
    const long = opt.long ?? ''
    throw new UsageError(msg.startsWith(long) ? where + msg.slice(long.length) : `${where}: ${msg}`)
  }
}

/** A file value for `opt`: checked, parsed, and with a relative path taken from `dir`. */
function fromFile(opt: Option, raw: unknown, where: string, dir: string): unknown {
  if (isSwitch(opt)) {
    if (typeof raw !== 'boolean') throw new UsageError(`${where} must be true or false, got ${describe(raw)}`)
    return raw
  }
  const items = Array.isArray(raw) ? raw : [raw]
  if (Array.isArray(raw) && raw.length === 0) throw new UsageError(`${where} must not be an empty list`)
  let value: unknown
  for (const item of items) {
    if (typeof item !== 'string' && !(typeof item === 'number' && Number.isFinite(item)))
      throw new UsageError(
        `${where} must be ${Array.isArray(raw) ? 'a list of ' : ''}text or a number, got ${describe(item)}`,
      )
    let text = String(item)
    if (isPath(opt)) {
      if (text.trim() === '') throw new UsageError(`${where} must not be empty`)
      text = resolve(dir, text)
    }
    value = parseWith(opt, text, value, where)
  }
  if (Array.isArray(raw) && !Array.isArray(value))
    throw new UsageError(`${where} takes one value, not a list`)
  return value
}

/** An environment value for `opt` (lists comma-separated; switches true/false/1/0/yes/no). */
function fromEnv(opt: Option, raw: string, name: string): unknown {
  if (isSwitch(opt)) {
    const v = raw.trim().toLowerCase()
    if (['1', 'true', 'yes', 'on'].includes(v)) return true
    if (['0', 'false', 'no', 'off'].includes(v)) return false
    throw new UsageError(`${name} must be true or false, got ${describe(raw)}`)
  }
  const parts = raw.split(',').map((p) => p.trim())
  if (parts.length === 1) return parseWith(opt, raw, undefined, name)
  let value = parseWith(opt, parts[0]!, undefined, name)
  if (!Array.isArray(value)) return parseWith(opt, raw, undefined, name) // one value with a comma in it
  for (const part of parts.slice(1)) value = parseWith(opt, part, value, name)
  return value
}

/** The closest known key to an unknown one (same letters ignoring case and separators). */
function suggest(key: string, known: Iterable<string>): string {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '')
  for (const k of known) if (norm(k) === norm(key)) return ` (did you mean ${k}?)`
  return ''
}

/** Builds the join groups of the file's `join` list, checked like `--join` flags. */
function fileJoins(raw: unknown, file: string, schema: ConfigSchema, dir: string): JoinGroup[] {
  const shape = `a list of { cluster, ${[...schema.join.keys()].filter((k) => k !== 'cluster').join(', ')} }`
  if (!Array.isArray(raw)) throw new UsageError(`${file}: join must be ${shape}, got ${describe(raw)}`)
  const groups = new JoinGroups()
  raw.forEach((entry: unknown, i) => {
    const at = `${file}: join[${i}]`
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry))
      throw new UsageError(`${at} must be a mapping such as { cluster: db, clusterKeyFile: db.key }`)
    const e = entry as Record<string, unknown>
    if (typeof e.cluster !== 'string') throw new UsageError(`${at}.cluster must be a cluster name`)
    groups.add('join', e.cluster)
    for (const [key, value] of Object.entries(e)) {
      if (key === 'cluster') continue
      const opt = schema.join.get(key)
      if (!opt)
        throw new UsageError(`${at}: unknown key ${JSON.stringify(key)}${suggest(key, schema.join.keys())}`)
      const v = fromFile(opt, value, `${at}.${key}`, dir)
      const flag = opt.long!.replace(/^--/, '') as JoinFlag
      if (v === false) continue
      groups.add(flag, v === true ? undefined : (v as string | number))
    }
  })
  try {
    return groups.check()
  } catch (err) {
    // The checks speak in flags: say it in file keys.
    const msg = String((err as Error).message)
      .replace(/--join (\S+?)(:| |$)/, 'join entry $1$2')
      .replace(/--([a-z][a-z-]*)/g, (_m, f: string) =>
        f.replace(/-([a-z])/g, (_n, c: string) => c.toUpperCase()),
      )
    throw new UsageError(`${file}: ${msg}`)
  }
}

/** The effective options of `plexus node` and its join groups. */
export interface ResolvedNodeConfig {
  /** Every option value (as commander's `opts()` after file and environment). */
  values: Record<string, unknown>
  /** File groups first (minus clusters the flags also join), then the flags' groups. */
  joins: JoinGroup[]
}

/**
 * Applies the `--config` file and the `PLEXUS_*` variables in `env` to the parsed `cmd`:
 * a file value is used unless the flag was given, a variable wins over both. The flags'
 * join groups (`cliJoins`) replace file groups of the same cluster.
 */
export async function resolveNodeConfig(
  cmd: Command,
  cliJoins: JoinGroup[],
  joinFlags: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<ResolvedNodeConfig> {
  const schema = configSchema(cmd, joinFlags)
  const file = cmd.opts().config as string | undefined
  let joins = cliJoins
  if (file !== undefined) {
    const data = await loadConfigFile(file)
    const dir = dirname(resolve(file))
    for (const [key, raw] of Object.entries(data)) {
      if (key === 'join') {
        const fromFileJoins = fileJoins(raw, file, schema, dir)
        const given = new Set(cliJoins.map((g) => g.cluster))
        joins = [...fromFileJoins.filter((g) => !given.has(g.cluster)), ...cliJoins]
        continue
      }
      const opt = schema.top.get(key)
      if (!opt) {
        if (schema.join.has(key))
          throw new UsageError(
            `${file}: ${key} belongs in a join entry (join: [{ cluster: NAME, ${key}: ... }])`,
          )
        throw new UsageError(`${file}: unknown key ${JSON.stringify(key)}${suggest(key, schema.top.keys())}`)
      }
      const value = fromFile(opt, raw, `${file}: ${key}`, dir)
      if (cmd.getOptionValueSource(key) !== 'cli') cmd.setOptionValueWithSource(key, value, 'config')
    }
  }
  for (const [key, opt] of schema.top) {
    const name = envName(key)
    const raw = env[name]
    if (raw === undefined || raw === '') continue
    cmd.setOptionValueWithSource(key, fromEnv(opt, raw, name), 'env')
  }
  return { values: cmd.opts(), joins }
}

/** The effective configuration as a file would hold it (for `--print-config`). */
export function effectiveConfig(
  cmd: Command,
  resolved: ResolvedNodeConfig,
  joinFlags: readonly string[],
): Record<string, unknown> {
  const schema = configSchema(cmd, joinFlags)
  const out: Record<string, unknown> = {}
  for (const key of schema.top.keys()) {
    const v = resolved.values[key]
    if (v !== undefined) out[key] = v
  }
  if (resolved.joins.length > 0) {
    out.join = resolved.joins.map((g) => {
      const { keyFile, ...rest } = g
      const entry: Record<string, unknown> = { cluster: g.cluster, clusterKeyFile: keyFile }
      for (const [k, v] of Object.entries(rest)) if (v !== undefined && k !== 'cluster') entry[k] = v
      return entry
    })
  }
  return out
}
