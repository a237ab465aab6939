/**
 * Validation of `createNode` options into the node's configuration. Every bad field throws
 * `InvalidArgumentError` naming it.
 */
import { multiaddr } from '@multiformats/multiaddr'
import {
  CIRCUIT_RELAY,
  DEFAULT_CIPHER,
  DEFAULT_GC_TUNING,
  DEFAULT_HTTP_HOST,
  DEFAULT_LIMITS,
  DEFAULT_LISTEN,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_NETWORK,
  DEFAULT_RAFT_LOG_BYTES,
  DEFAULT_RELAY_HANDSHAKE_TIMEOUT,
  DEFAULT_RELAY_HOST,
  DEFAULT_RELAY_IDLE_TIMEOUT,
  DEFAULT_RELAY_MAX_CONNECTIONS,
  DEFAULT_RELAY_PORT,
  DEFAULT_REPLACE_REPLICA_AFTER,
  MAX_MAX_MESSAGE_SIZE,
  MAX_RAFT_LOG_BYTES,
  MAX_TIMEOUT,
  OVERLAY,
} from './constants.js'
import { InvalidArgumentError } from './errors.js'
import { checkCredentials, type ResolvedCredentials } from './streams/access/authz.js'
import { CIPHER_CHOICES, type CipherChoice } from './transport/encrypters.js'
import type { Limits, Logger, NodeOptions } from './types.js'
import { parseKey } from './util/keys.js'
import { SILENT_LOGGER } from './util/logger.js'
import {
  checkKnownKeys,
  checkNetworkName,
  checkOptions,
  checkPort,
  checkPositiveInt,
  checkStringArray,
  describe,
} from './util/validate.js'

/** A node's validated configuration. */
export interface NodeConfig {
  network: string
  cipher: CipherChoice
  gcTuning: boolean
  /** Where the node logs (silent when not given). */
  logger: Logger
  networkKey: Uint8Array | undefined
  listen: string[]
  bootstrap: string[]
  local: boolean
  mdns: boolean
  dht: boolean
  dataDir: string | undefined
  relay:
    | {
        host: string
        port: number
        maxConnections: number
        idleTimeoutMs: number
        handshakeTimeoutMs: number
        /** WebSocket endpoint port (docs/relay-protocol.md, "WebSocket transport"); off when undefined. */
        wsPort: number | undefined
        /** Browser origins allowed on the WebSocket besides its own. */
        wsOrigins: string[]
        /** Directory of static pages the WebSocket endpoint serves. */
        wsStatic: string | undefined
      }
    | undefined
  /** The monitoring HTTP endpoint (observe/http.ts); off when undefined. */
  http: { host: string; port: number } | undefined
  maxMessageSize: number
  /** Neighbour links kept (`maxLinks`, src/overlay/). */
  maxLinks: number
  replaceReplicaAfter: number
  raftLogBytes: number
  /** Credentials for stream administration on clusters not joined (streams/access/authz.ts). */
  credentials: ResolvedCredentials
  /** Circuit relay settings (`transport/nat.ts`), defaults from `CIRCUIT_RELAY`. */
  circuitRelay: CircuitRelayConfig
}

/** The validated `circuitRelay` option. */
export interface CircuitRelayConfig {
  server: boolean
  reserve: 'auto' | 'always' | 'never'
  reservations: number
  maxReservations: number
  dataLimit: number
  durationLimitMs: number
}

/**
 * The options `createNode` knows, per object: any other key is refused with
 * `InvalidArgumentError` naming it (a misspelt option must not be silently ignored).
 */
export const KNOWN_NODE_OPTIONS = {
  '': [
    'network',
    'networkKey',
    'cipher',
    'gcTuning',
    'logger',
    'listen',
    'bootstrap',
    'discovery',
    'dataDir',
    'relay',
    'http',
    'maxMessageSize',
    'maxLinks',
    'streams',
    'credentials',
    'circuitRelay',
  ],
  circuitRelay: ['server', 'reserve', 'reservations', 'maxReservations', 'dataLimit', 'durationLimitMs'],
  discovery: ['local', 'mdns', 'dht'],
  'discovery.mdns': ['interface'],
  relay: [
    'host',
    'port',
    'maxConnections',
    'idleTimeoutMs',
    'handshakeTimeoutMs',
    'wsPort',
    'wsOrigins',
    'wsStatic',
  ],
  streams: ['replaceReplicaAfter', 'raftLogBytes'],
  http: ['host', 'port'],
} as const

/** Validates `createNode` options. */
export function parseNodeOptions(options: unknown): NodeConfig {
  const o = checkOptions<NodeOptions>(options, 'options')
  checkKnownKeys(o, KNOWN_NODE_OPTIONS[''], '')
  const network = checkNetworkName(o.network ?? DEFAULT_NETWORK, 'network')
  const networkKey = o.networkKey === undefined ? undefined : parseKey(o.networkKey, 'networkKey')
  const cipher = o.cipher ?? DEFAULT_CIPHER
  if (!CIPHER_CHOICES.includes(cipher)) {
    throw new InvalidArgumentError(
      `cipher must be one of ${CIPHER_CHOICES.join(', ')}, got ${describe(cipher)}`,
    )
  }
  if (o.gcTuning !== undefined && typeof o.gcTuning !== 'boolean') {
    throw new InvalidArgumentError(`gcTuning must be a boolean, got ${describe(o.gcTuning)}`)
  }
  const listen = checkStringArray(o.listen, 'listen') ?? DEFAULT_LISTEN
  const bootstrap = checkStringArray(o.bootstrap, 'bootstrap') ?? []
  const discovery = checkOptions<NonNullable<NodeOptions['discovery']>>(o.discovery, 'discovery')
  checkKnownKeys(discovery, KNOWN_NODE_OPTIONS.discovery, 'discovery')
  for (const f of ['local', 'dht'] as const) {
    if (discovery[f] !== undefined && typeof discovery[f] !== 'boolean') {
      throw new InvalidArgumentError(`discovery.${f} must be a boolean, got ${describe(discovery[f])}`)
    }
  }
  if (discovery.mdns !== undefined && typeof discovery.mdns !== 'boolean') {
    const mdns = checkOptions<object>(discovery.mdns, 'discovery.mdns')
    checkKnownKeys(mdns, KNOWN_NODE_OPTIONS['discovery.mdns'], 'discovery.mdns')
  }
  const maxMessageSize =
    checkPositiveInt(o.maxMessageSize, 'maxMessageSize', MAX_MAX_MESSAGE_SIZE) ?? DEFAULT_MAX_MESSAGE_SIZE
  const maxLinks = checkPositiveInt(o.maxLinks, 'maxLinks', OVERLAY.maxMaxLinks) ?? OVERLAY.maxLinks
  if (maxLinks < OVERLAY.minMaxLinks)
    throw new InvalidArgumentError(`maxLinks must be at least ${OVERLAY.minMaxLinks}, got ${maxLinks}`)
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir === '')) {
    throw new InvalidArgumentError(`dataDir must be a non-empty path string, got ${describe(o.dataDir)}`)
  }
  for (const [field, list] of [
    ['listen', listen],
    ['bootstrap', bootstrap],
  ] as const) {
    for (const [i, a] of list.entries()) {
      try {
        multiaddr(a)
      } catch {
        throw new InvalidArgumentError(`${field}[${i}] is not a valid multiaddr: ${describe(a)}`)
      }
    }
  }
  let relay: NodeConfig['relay']
  if (o.relay !== undefined && o.relay !== false) {
    const r = checkOptions<Exclude<NonNullable<NodeOptions['relay']>, false>>(o.relay, 'relay')
    checkKnownKeys(r, KNOWN_NODE_OPTIONS.relay, 'relay')
    if (r.host !== undefined && typeof r.host !== 'string') {
      throw new InvalidArgumentError(`relay.host must be a string, got ${describe(r.host)}`)
    }
    relay = {
      host: r.host ?? DEFAULT_RELAY_HOST,
      port: checkPort(r.port, 'relay.port') ?? DEFAULT_RELAY_PORT,
      maxConnections:
        checkPositiveInt(r.maxConnections, 'relay.maxConnections') ?? DEFAULT_RELAY_MAX_CONNECTIONS,
      idleTimeoutMs:
        checkPositiveInt(r.idleTimeoutMs, 'relay.idleTimeoutMs', MAX_TIMEOUT) ?? DEFAULT_RELAY_IDLE_TIMEOUT,
      handshakeTimeoutMs:
        checkPositiveInt(r.handshakeTimeoutMs, 'relay.handshakeTimeoutMs', MAX_TIMEOUT) ??
        DEFAULT_RELAY_HANDSHAKE_TIMEOUT,
      wsPort: checkPort(r.wsPort, 'relay.wsPort'),
      wsOrigins: checkOrigins(r.wsOrigins),
      wsStatic: checkWsStatic(r.wsStatic, r.wsPort),
    }
  }
  const http = checkHttp(o.http)
  const streams = checkOptions<NonNullable<NodeOptions['streams']>>(o.streams, 'streams')
  checkKnownKeys(streams, KNOWN_NODE_OPTIONS.streams, 'streams')
  const replaceReplicaAfter =
    checkPositiveInt(streams.replaceReplicaAfter, 'streams.replaceReplicaAfter', MAX_TIMEOUT) ??
    DEFAULT_REPLACE_REPLICA_AFTER
  const raftLogBytes =
    checkPositiveInt(streams.raftLogBytes, 'streams.raftLogBytes', MAX_RAFT_LOG_BYTES) ??
    DEFAULT_RAFT_LOG_BYTES
  return {
    network,
    cipher,
    gcTuning: o.gcTuning ?? DEFAULT_GC_TUNING,
    logger: checkLogger(o.logger),
    networkKey,
    listen,
    bootstrap,
    local: discovery.local !== false,
    mdns: discovery.mdns !== undefined && discovery.mdns !== false,
    // On when bootstrap addresses are given (cheap: docs/operations.md, "Across networks").
    dht: discovery.dht ?? bootstrap.length > 0,
    dataDir: o.dataDir,
    relay,
    http,
    maxMessageSize,
    maxLinks,
    replaceReplicaAfter,
    raftLogBytes,
    credentials: checkCredentials(o.credentials),
    circuitRelay: checkCircuitRelay(o.circuitRelay),
  }
}

/** The `circuitRelay` option (see `NodeOptions.circuitRelay`). */
function checkCircuitRelay(value: unknown): CircuitRelayConfig {
  const c = checkOptions<NonNullable<NodeOptions['circuitRelay']>>(value, 'circuitRelay')
  checkKnownKeys(c, KNOWN_NODE_OPTIONS.circuitRelay, 'circuitRelay')
  if (c.server !== undefined && typeof c.server !== 'boolean')
    throw new InvalidArgumentError(`circuitRelay.server must be a boolean, got ${describe(c.server)}`)
  if (c.reserve !== undefined && !['auto', 'always', 'never'].includes(c.reserve as string))
    throw new InvalidArgumentError(
      `circuitRelay.reserve must be one of auto, always, never, got ${describe(c.reserve)}`,
    )
  return {
    server: c.server ?? false,
    reserve: c.reserve ?? CIRCUIT_RELAY.reserve,
    reservations:
      checkPositiveInt(c.reservations, 'circuitRelay.reservations', 16) ?? CIRCUIT_RELAY.reservations,
    maxReservations:
      checkPositiveInt(c.maxReservations, 'circuitRelay.maxReservations', 65_536) ??
      CIRCUIT_RELAY.maxReservations,
    dataLimit:
      checkPositiveInt(c.dataLimit, 'circuitRelay.dataLimit', Number.MAX_SAFE_INTEGER) ??
      CIRCUIT_RELAY.dataLimit,
    durationLimitMs:
      checkPositiveInt(c.durationLimitMs, 'circuitRelay.durationLimitMs', MAX_TIMEOUT) ??
      CIRCUIT_RELAY.durationLimit,
  }
}

/** The `http` option: false/undefined (off) or `{ host?, port? }`. */
function checkHttp(value: unknown): NodeConfig['http'] {
  if (value === undefined || value === false) return undefined
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new InvalidArgumentError(`http must be false or an object { host?, port? }, got ${describe(value)}`)
  const h = value as { host?: unknown; port?: unknown }
  checkKnownKeys(h, KNOWN_NODE_OPTIONS.http, 'http')
  if (h.host !== undefined && (typeof h.host !== 'string' || h.host === ''))
    throw new InvalidArgumentError(
      `http.host must be a non-empty host name or address, got ${describe(h.host)}`,
    )
  return { host: h.host ?? DEFAULT_HTTP_HOST, port: checkPort(h.port, 'http.port') ?? 0 }
}

/** `relay.wsOrigins`: http(s) origins (scheme://host[:port], no path) or `null`. */
function checkOrigins(value: unknown): string[] {
  const list = checkStringArray(value, 'relay.wsOrigins') ?? []
  for (const [i, o] of list.entries()) {
    if (o === 'null') continue
    let u: URL | undefined
    try {
      u = new URL(o)
    } catch {
      u = undefined
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.origin !== o.replace(/\/$/, '')) {
      throw new InvalidArgumentError(
        `relay.wsOrigins[${i}] must be an origin such as http://localhost:3000 (scheme, host and port only) or null, got ${describe(o)}`,
      )
    }
  }
  return list
}

/** `relay.wsStatic`: a non-empty directory path, only with `wsPort`. */
function checkWsStatic(value: unknown, wsPort: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '')
    throw new InvalidArgumentError(`relay.wsStatic must be a directory path, got ${describe(value)}`)
  if (wsPort === undefined) throw new InvalidArgumentError('relay.wsStatic needs relay.wsPort')
  return value
}

/** Validates join limits, filling defaults. */
export function parseLimits(value: unknown): Required<Limits> {
  const l = checkOptions<Limits>(value, 'options.limits')
  checkKnownKeys(l, ['requests', 'broadcasts', 'tunnels', 'queueBytes'], 'options.limits')
  return {
    requests: checkPositiveInt(l.requests, 'options.limits.requests') ?? DEFAULT_LIMITS.requests,
    broadcasts: checkPositiveInt(l.broadcasts, 'options.limits.broadcasts') ?? DEFAULT_LIMITS.broadcasts,
    tunnels: checkPositiveInt(l.tunnels, 'options.limits.tunnels') ?? DEFAULT_LIMITS.tunnels,
    queueBytes: checkPositiveInt(l.queueBytes, 'options.limits.queueBytes') ?? DEFAULT_LIMITS.queueBytes,
  }
}

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const

/** The `logger` option: an object with the four level methods, or silence. */
function checkLogger(value: unknown): Logger {
  if (value === undefined) return SILENT_LOGGER
  if (value === null || typeof value !== 'object')
    throw new InvalidArgumentError(`logger must be a pino-compatible logger object, got ${describe(value)}`)
  const l = value as Record<string, unknown>
  for (const level of LOG_LEVELS)
    if (typeof l[level] !== 'function')
      throw new InvalidArgumentError(`logger.${level} must be a function, got ${describe(l[level])}`)
  if (l.child !== undefined && typeof l.child !== 'function')
    throw new InvalidArgumentError(`logger.child must be a function when given, got ${describe(l.child)}`)
  return value as Logger
}
