/**
 * One process of the overlay benchmark (bench/overlay.ts): `--nodes` real libp2p nodes on TCP
 * loopback (same-host discovery, no mDNS) with `--max-links`. Members join cluster `overlay`
 * and answer each request with their peer id; clients only send requests.
 *
 * Usage: node dist/bench/overlay-node.js --network N --key K --max-links L --nodes K
 *          --role member|client --expect M
 * Prints `READY <peer id>,…` once started (members joined) and `ALL <ms>` once every node of
 * the process knows M members (ms since the process started). Commands on stdin:
 * - `s`: `LINKS <neighbours>,… <on-demand>,…` (per node);
 * - `m`: `MEMBERS <fewest members any node of the process knows>`;
 * - `r` (clients): every node sends requests one at a time (2 s timeout, 50 ms apart): `RUNNING`;
 * - `q <peer id>` (clients): `SEEN <nodes that got a reply from that member>`;
 * - `e` (clients): `ERRORS <failed> <answered> <time of the last failure, ms since the epoch, or 0>`.
 * Stops on SIGTERM/SIGINT or when stdin ends (the parent died).
 */
import { parseArgs } from 'node:util'
import type { PlexusNode } from '../src/index.js'
import { benchMain, runUntilStopped, startBenchNode } from './node-process.js'

const CLUSTER = 'overlay'

benchMain(async () => {
  const t0 = performance.now()
  const { values } = parseArgs({
    options: {
      network: { type: 'string' },
      key: { type: 'string' },
      'max-links': { type: 'string' },
      nodes: { type: 'string', default: '1' },
      role: { type: 'string', default: 'member' },
      expect: { type: 'string' },
    },
  })
  const { network, key, expect } = values
  if (!network || !key || !values['max-links'] || !expect || !['member', 'client'].includes(values.role)) {
    throw new Error(
      'usage: overlay-node.js --network N --key K --max-links L --nodes K --role member|client --expect M',
    )
  }
  const member = values.role === 'member'
  const nodes: PlexusNode[] = []
  for (let i = 0; i < Number(values.nodes); i++) {
    nodes.push(await startBenchNode(network, Number(values['max-links'])))
    console.error(`node ${i + 1} started after ${Math.round(performance.now() - t0)} ms`) // child logs
  }
  const known = (n: PlexusNode) => n.status().clusters.find((c) => c.name === CLUSTER)?.members.length ?? 0
  const seen = nodes.map(() => new Set<string>())
  const tally = { failed: 0, answered: 0, lastFailure: 0 }
  let running = false
  const loop = async (n: PlexusNode, i: number) => {
    for (;;) {
      try {
        seen[i]!.add(new TextDecoder().decode(await n.request(CLUSTER, 'x', { timeout: 2000 })))
        tally.answered++
      } catch {
        tally.failed++
        tally.lastFailure = Date.now()
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  runUntilStopped(nodes, (cmd) => {
    if (cmd === 's') {
      const c = nodes.map((n) => n.status().counters)
      const neighbours = c.map((x) => x['links.neighbours'] ?? 0)
      console.log(`LINKS ${neighbours.join()} ${c.map((x) => x['links.onDemand'] ?? 0).join()}`)
    } else if (cmd === 'm') {
      console.log(`MEMBERS ${Math.min(...nodes.map(known))}`)
    } else if (cmd === 'r') {
      if (!member && !running) for (const [i, n] of nodes.entries()) void loop(n, i)
      running = true
      console.log('RUNNING')
    } else if (cmd.startsWith('q ')) {
      const id = cmd.slice(2)
      console.log(`SEEN ${seen.filter((s) => s.has(id)).length}`)
    } else if (cmd === 'e') {
      console.log(`ERRORS ${tally.failed} ${tally.answered} ${tally.lastFailure}`)
    }
  })
  if (member) for (const n of nodes) await n.join(CLUSTER, { key, onRequest: () => n.id })
  console.log(`READY ${nodes.map((n) => n.id).join()}`)
  // Until every member is known: the time is the figure (a poll every 50 ms, then none).
  const poll = setInterval(() => {
    if (nodes.every((n) => known(n) >= Number(expect))) {
      clearInterval(poll)
      console.log(`ALL ${Math.round(performance.now() - t0)}`)
    }
  }, 50)
})
