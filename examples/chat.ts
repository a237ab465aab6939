/**
 * Chat over broadcast: every participant joins the cluster `chat` and broadcasts the lines
 * it reads from stdin; every member prints what it receives (its own lines included).
 *
 *   node dist/examples/chat.js --name alice        # on as many terminals/hosts as you like
 *   node dist/examples/chat.js --demo              # three participants in one process, then exit
 *
 * Participants on one host find each other with no flags; `--bootstrap MULTIADDR` reaches
 * other hosts. All participants need the same cluster key: `--key` (or PLEXUS_CHAT_KEY),
 * default a fixed passphrase so the example works out of the box.
 */
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { createNode, type PlexusNode } from '../src/index.js'

const CLUSTER = 'chat'
const DEFAULT_KEY = 'plexus-chat-example-passphrase'
const dec = (b: Uint8Array) => new TextDecoder().decode(b)

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

/** Waits until `node` sees `count` connected members of the chat. */
async function waitForMembers(node: PlexusNode, count: number, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    const c = node.status().clusters.find((x) => x.name === CLUSTER)
    if ((c?.members.filter((m) => m.connected).length ?? 0) >= count) return
    if (Date.now() > end) throw new Error(`only saw ${c?.members.length ?? 0} of ${count} participants`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** Three participants in one process; each says two lines and must hear all six. */
async function demo(): Promise<void> {
  const network = `chat-demo-${randomBytes(4).toString('hex')}`
  const names = ['alice', 'bob', 'carol']
  const first = await createNode({ network, listen: ['/ip4/127.0.0.1/tcp/0'] })
  const rest = await Promise.all(
    names
      .slice(1)
      .map(() => createNode({ network, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: first.addresses })),
  )
  const nodes = [first, ...rest]
  const heard = new Map<string, string[]>(names.map((n) => [n, []]))
  try {
    await Promise.all(
      nodes.map((node, i) =>
        node.join(CLUSTER, {
          key: DEFAULT_KEY,
          onBroadcast: (data) => {
            const line = dec(data)
            heard.get(names[i]!)!.push(line)
            console.log(`[${names[i]}] ${line}`)
          },
        }),
      ),
    )
    await Promise.all(nodes.map((n) => waitForMembers(n, names.length)))
    for (let round = 1; round <= 2; round++) {
      for (let i = 0; i < nodes.length; i++) {
        await nodes[i]!.broadcast(CLUSTER, `${names[i]}: message ${round} from ${names[i]}`)
      }
    }
    const want = names.length * 2
    const end = Date.now() + 10_000
    while ([...heard.values()].some((h) => h.length < want)) {
      if (Date.now() > end) throw new Error('not every participant heard every line')
      await new Promise((r) => setTimeout(r, 20))
    }
    console.log(`demo ok: ${names.length} participants each heard ${want} lines`)
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
  }
}

/** One participant reading lines from stdin until it ends. */
async function interactive(): Promise<void> {
  const name = arg('name') ?? `user-${randomBytes(2).toString('hex')}`
  const bootstrap = arg('bootstrap')
  const node = await createNode({ bootstrap: bootstrap ? [bootstrap] : undefined })
  await node.join(CLUSTER, {
    key: arg('key') ?? process.env.PLEXUS_CHAT_KEY ?? DEFAULT_KEY,
    onBroadcast: (data) => console.log(dec(data)),
  })
  console.error(`joined ${CLUSTER} as ${name} (node ${node.id}); type lines, Ctrl-D to leave`)
  const rl = createInterface({ input: process.stdin })
  for await (const line of rl) {
    if (line.trim() === '') continue
    await node.broadcast(CLUSTER, `${name}: ${line}`)
  }
  await node.stop()
}

;(process.argv.includes('--demo') ? demo() : interactive()).then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`${err.name}: ${err.message}`)
    process.exit(1)
  },
)
