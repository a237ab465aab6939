/**
 * `plexus node`: runs an overlay node in the foreground with the relay endpoint on
 * 127.0.0.1 (so client commands can attach), optionally serving clusters:
 * each `--join CLUSTER` starts a group that the following `--cluster-key-file`, `--exec`,
 * `--echo`, `--max-requests`, `--tunnel-exec`, `--tunnel-echo`, `--max-tunnels` and
 * `--on-broadcast` belong to (tunnels and broadcasts are served as serve.ts describes). Prints one ready line on stdout
 * (`plexus node <id> network <n> relay <host:port> listening <addrs...>`), then
 * `relay websocket ws://…/` with `--relay-ws-port` and `http http://host:port/` with
 * `--http-port` (metrics, health), then `joined <cluster>` per join. SIGINT/SIGTERM stop the node cleanly and exit 0.
 * `--config FILE` and `PLEXUS_*` variables supply the same options (config.ts).
 */
import { type Command, Option } from 'commander'
import {
  DEFAULT_CIPHER,
  DEFAULT_HTTP_HOST,
  DEFAULT_LIMITS,
  DEFAULT_NETWORK,
  DEFAULT_RELAY_HOST,
  DEFAULT_RELAY_PORT,
  OVERLAY,
} from '../../constants.js'
import { CIPHER_CHOICES, type CipherChoice } from '../../transport/encrypters.js'
import type { JoinOptions, PlexusNode } from '../../types.js'
import { errFields } from '../../util/logger.js'
import { collectMultiaddr, parseNetwork, parsePort, parsePositiveInt, readKeyFile } from '../args.js'
import { effectiveConfig, resolveNodeConfig } from '../config.js'
import { execHandler } from '../exec.js'
import { JOIN_FLAGS, type JoinGroup, JoinGroups } from '../join-groups.js'
import { cliLogger, LOG_FORMATS, LOG_LEVELS, logSettings, parseChoice } from '../log.js'
import { EXIT, formatError, UsageError, writeOut } from '../output.js'
import { broadcastExecHandler, tunnelEchoHandler, tunnelExecHandler } from '../serve.js'

/** Concurrent `--exec` commands per cluster unless `--max-requests` says otherwise. */
export const DEFAULT_EXEC_CONCURRENCY = 64
/** How long a clean stop may take before the process exits anyway (ms). */
const STOP_GRACE = 5000

/** Parsed options of `plexus node`. */
export interface NodeFlags {
  network?: string
  networkKeyFile?: string
  cipher: CipherChoice
  listen?: string[]
  bootstrap?: string[]
  dataDir?: string
  relayPort: number
  relayWsPort?: number
  relayWsOrigin?: string[]
  relayWsStatic?: string
  httpPort?: number
  httpHost?: string
  maxLinks?: number
  mdns: boolean
  local: boolean
  dht?: boolean
  gcTuning: boolean
  circuitRelayServer?: boolean
  circuitRelayReserve?: 'auto' | 'always' | 'never'
  config?: string
  printConfig?: boolean
  logLevel?: string
  logFormat?: string
}

/** What `plexus node` runs once its options are resolved (tests pass their own). */
export type NodeRunner = (flags: NodeFlags, joins: JoinGroup[]) => Promise<void>

/**
 * Registers the `node` command on `program`; `run` starts the node (default: runNode) and
 * `env` holds the `PLEXUS_*` variables (default: process.env).
 */
export function registerNode(
  program: Command,
  run: NodeRunner = runNode,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const groups = new JoinGroups()
  const cmd = program
    .command('node')
    .description('run an overlay node (with the relay endpoint on 127.0.0.1 for client commands)')
    .option(
      '--config <file>',
      'read options from a YAML or JSON file (keys: flag names in camelCase; flags and PLEXUS_* variables win)',
    )
    .option(
      '--print-config',
      'print the effective options (file, flags, PLEXUS_* variables) as YAML and exit',
    )
    .option('--network <name>', `overlay name (default ${DEFAULT_NETWORK})`, parseNetwork)
    .option('--network-key-file <file>', 'file holding the network key (pre-shared, from plexus keygen)')
    .addOption(
      new Option(
        '--cipher <name>',
        'AEAD preferred for connections (auto: AES-256-GCM with AES instructions)',
      )
        .choices(CIPHER_CHOICES)
        .default(DEFAULT_CIPHER),
    )
    .option(
      '--listen <multiaddr>',
      'address to listen on, repeatable (default /ip4/0.0.0.0/tcp/0)',
      collectMultiaddr('--listen'),
    )
    .option(
      '--bootstrap <multiaddr>',
      'known node to dial (…/p2p/<id>), repeatable',
      collectMultiaddr('--bootstrap'),
    )
    .option('--data-dir <dir>', 'directory keeping the identity (same id after restart)')
    .option(
      '--relay-port <port>',
      `relay port on 127.0.0.1 (0: any free port)`,
      parsePort('--relay-port'),
      DEFAULT_RELAY_PORT,
    )
    .option(
      '--relay-ws-port <port>',
      'also serve the relay over WebSocket on this port of 127.0.0.1, for browsers (0: any free port)',
      parsePort('--relay-ws-port'),
    )
    .option(
      '--relay-ws-origin <origin>',
      'a browser origin (http://host:port, or null) allowed on the WebSocket relay besides its own pages; repeatable',
      (v: string, prev: string[] | undefined) => {
        if (v !== 'null' && !/^https?:\/\/[^/\s]+\/?$/i.test(v))
          throw new UsageError(
            `--relay-ws-origin must be an origin such as http://localhost:3000 or null, got "${v}"`,
          )
        return [...(prev ?? []), v]
      },
    )
    .option(
      '--relay-ws-static <dir>',
      'serve the pages in DIR over HTTP on the WebSocket relay port (its own origin)',
    )
    .option(
      '--http-port <port>',
      'serve /metrics (Prometheus), /healthz and /readyz over HTTP on this port (0: any free port)',
      parsePort('--http-port'),
    )
    .option('--http-host <host>', `address the HTTP port listens on (default ${DEFAULT_HTTP_HOST})`)
    .option(
      '--max-links <n>',
      `neighbour links kept (default ${OVERLAY.maxLinks}); peers it exchanges traffic with get on-demand links besides`,
      parsePositiveInt('--max-links'),
    )
    .option('--no-mdns', 'do not use mDNS (LAN multicast) discovery')
    .option(
      '--dht',
      'run the Kademlia DHT: members advertise their clusters, calls look up clusters with no known member (default: on with --bootstrap)',
    )
    .option('--no-dht', 'do not run the DHT, even with --bootstrap')
    .option(
      '--no-local',
      'do not find (or be found by) other nodes on this machine through the same-host registry',
    )
    .option(
      '--circuit-relay-server',
      'be a circuit relay for nodes of this network behind a NAT (run it where others can dial in)',
    )
    .option(
      '--circuit-relay-reserve <when>',
      'take slots on circuit relays: auto (when peers see this node behind a NAT; default)|always|never',
      parseChoice(['auto', 'always', 'never'] as const, '--circuit-relay-reserve'),
    )
    .option('--no-gc-tuning', "leave V8's garbage-collector settings as they are (see README Performance)")
    .option(
      '--log-level <level>',
      `lowest level logged on stderr: ${LOG_LEVELS.join('|')} (default info; PLEXUS_LOG_LEVEL overrides)`,
      parseChoice(LOG_LEVELS, '--log-level'),
    )
    .option(
      '--log-format <format>',
      'log lines on stderr: pretty|json (default pretty on a terminal, else json; PLEXUS_LOG_FORMAT overrides)',
      parseChoice(LOG_FORMATS, '--log-format'),
    )
    .option('--join <cluster>', 'serve a cluster; the flags below belong to the latest --join')
    .option('--cluster-key-file <file>', 'key of the cluster being joined (required with --join)')
    .option(
      '--exec <cmd>',
      'serve each request by running /bin/sh -c CMD: request on stdin, reply from stdout',
    )
    .option('--echo', 'serve each request by replying with the request itself')
    .option(
      '--max-requests <n>',
      `requests of the cluster run at once (default ${DEFAULT_EXEC_CONCURRENCY} with --exec, ${DEFAULT_LIMITS.requests} otherwise); more get OverloadedError`,
      parsePositiveInt('--max-requests'),
    )
    .option(
      '--tunnel-exec <cmd>',
      'serve each tunnel by running /bin/sh -c CMD: tunnel bytes on stdin, its stdout back into the tunnel',
    )
    .option('--tunnel-echo', 'serve each tunnel by sending every message back')
    .option(
      '--max-tunnels <n>',
      `tunnels of the cluster open at once (default ${DEFAULT_LIMITS.tunnels}); more are refused`,
      parsePositiveInt('--max-tunnels'),
    )
    .option('--on-broadcast <cmd>', 'run /bin/sh -c CMD for each broadcast, data on stdin (cat prints them)')
  for (const flag of JOIN_FLAGS) cmd.on(`option:${flag}`, (v?: string) => groups.add(flag, v))
  cmd.action(async (_flags: NodeFlags, command: Command) => {
    const resolved = await resolveNodeConfig(command, groups.check(), JOIN_FLAGS, env)
    if (resolved.values.printConfig) {
      const { stringify } = await import('yaml')
      await writeOut(process.stdout, stringify(effectiveConfig(command, resolved, JOIN_FLAGS)))
      return
    }
    await run(resolved.values as unknown as NodeFlags, resolved.joins)
  })
}

async function runNode(flags: NodeFlags, joins: JoinGroup[]): Promise<void> {
  const logger = await cliLogger(logSettings(flags))
  if (flags.dataDir !== undefined && flags.dataDir.trim() === '')
    throw new UsageError('--data-dir must not be empty')
  if (flags.httpHost !== undefined && flags.httpPort === undefined)
    throw new UsageError('--http-host needs --http-port')
  if (flags.httpHost !== undefined && flags.httpHost.trim() === '')
    throw new UsageError('--http-host must not be empty')
  const networkKey =
    flags.networkKeyFile !== undefined
      ? await readKeyFile(flags.networkKeyFile, '--network-key-file')
      : undefined
  const prepared: Array<{ group: JoinGroup; options: JoinOptions }> = []
  for (const g of joins) {
    const key = await readKeyFile(g.keyFile!, '--cluster-key-file')
    const options: JoinOptions = { key }
    if (g.exec !== undefined) {
      options.onRequest = execHandler(g.exec)
      options.limits = { requests: g.maxRequests ?? DEFAULT_EXEC_CONCURRENCY }
    } else {
      // Echo: the request's data, and its headers when it has some.
      if (g.echo) options.onRequest = (data, ctx) => (ctx.headers ? { data, headers: ctx.headers } : data)
      if (g.maxRequests !== undefined) options.limits = { requests: g.maxRequests }
    }
    if (g.tunnelExec !== undefined) options.onTunnel = tunnelExecHandler(g.tunnelExec)
    else if (g.tunnelEcho) options.onTunnel = tunnelEchoHandler()
    if (g.maxTunnels !== undefined) options.limits = { ...options.limits, tunnels: g.maxTunnels }
    if (g.onBroadcast !== undefined) options.onBroadcast = broadcastExecHandler(g.onBroadcast)
    prepared.push({ group: g, options })
  }

  let node: PlexusNode | undefined
  let stopRequested = false
  let stopping: Promise<void> | undefined
  const stop = (code: number): Promise<void> => {
    stopRequested = true
    const running = node
    if (!running) return Promise.resolve() // start-up sees stopRequested and stops the node
    stopping ??= (async () => {
      const timer = setTimeout(() => process.exit(code), STOP_GRACE)
      try {
        await running.stop()
      } catch (err) {
        process.stderr.write(`${formatError(err)}\n`)
      }
      clearTimeout(timer)
      await writeOut(process.stdout, 'stopped\n')
      process.exit(code)
    })()
    return stopping
  }
  let signals = 0
  const onSignal = () => {
    signals++
    if (signals > 1) process.exit(EXIT.ok) // second Ctrl-C: do not wait any longer
    void stop(EXIT.ok)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)
  // A library fault must not leave the node half-alive: one error record (so JSON logs stay
  // parseable), then a clean stop with a failure status.
  process.on('uncaughtException', (err) => {
    logger.error(errFields(err), 'uncaught exception; stopping')
    void stop(EXIT.failure)
  })
  // Nobody sees these otherwise: logged (one record, so JSON logs stay parseable).
  process.on('unhandledRejection', (err) => logger.warn(errFields(err), 'unhandled promise rejection'))

  // Loaded here so the other commands (and bad-flag errors) do not pay for libp2p's start-up.
  const { createNode } = await import('../../node.js')
  node = await createNode({
    network: flags.network,
    networkKey,
    cipher: flags.cipher,
    listen: flags.listen,
    bootstrap: flags.bootstrap,
    dataDir: flags.dataDir,
    discovery: { mdns: flags.mdns, local: flags.local, dht: flags.dht },
    gcTuning: flags.gcTuning,
    maxLinks: flags.maxLinks,
    circuitRelay: { server: flags.circuitRelayServer === true, reserve: flags.circuitRelayReserve },
    relay: {
      host: DEFAULT_RELAY_HOST,
      port: flags.relayPort,
      wsPort: flags.relayWsPort,
      wsOrigins: flags.relayWsOrigin,
      wsStatic: flags.relayWsStatic,
    },
    http: flags.httpPort === undefined ? false : { port: flags.httpPort, host: flags.httpHost },
    logger,
  })
  if (stopRequested) {
    await stop(EXIT.ok)
    return
  }
  const listening = node.addresses.length > 0 ? node.addresses.join(' ') : '(none)'
  await writeOut(
    process.stdout,
    `plexus node ${node.id} network ${node.network} relay ${node.relayAddress ?? 'off'} listening ${listening}\n`,
  )
  if (node.relayWsAddress) await writeOut(process.stdout, `relay websocket ws://${node.relayWsAddress}/\n`)
  if (node.httpAddress) await writeOut(process.stdout, `http http://${node.httpAddress}/\n`)
  try {
    for (const { group, options } of prepared) {
      await node.join(group.cluster, options)
      const how = [group.exec !== undefined ? 'exec' : group.echo ? 'echo' : 'no request handler']
      if (group.tunnelExec !== undefined) how.push('tunnel-exec')
      else if (group.tunnelEcho) how.push('tunnel-echo')
      if (group.onBroadcast !== undefined) how.push('on-broadcast')
      await writeOut(process.stdout, `joined ${group.cluster} (${how.join(', ')})\n`)
    }
  } catch (err) {
    process.stderr.write(`${formatError(err)}\n`)
    await stop(EXIT.failure)
  }
  // Runs until a signal arrives; the libp2p node keeps the event loop alive.
}
