/**
 * File transfer over a tunnel. A member of the cluster `files` writes what arrives on each
 * tunnel to a file and answers with the SHA-256 of what it wrote; the sender streams a file
 * through `node.tunnel('files')`, half-closes, and compares the hashes. Credit flow control
 * keeps memory bounded whatever the file size.
 *
 *   node dist/examples/file-transfer.js                  # a 20 MB random temporary file
 *   node dist/examples/file-transfer.js --file big.bin
 *   node dist/examples/file-transfer.js --size 5000000
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNode, generateKey, type PlexusNode } from '../src/index.js'

const CHUNK = 256 * 1024

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

/** Writes `size` random bytes to `path`. */
async function randomFile(path: string, size: number): Promise<void> {
  const fh = await open(path, 'w')
  try {
    for (let done = 0; done < size; done += CHUNK) await fh.write(randomBytes(Math.min(CHUNK, size - done)))
  } finally {
    await fh.close()
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'plexus-files-'))
  const nodes: PlexusNode[] = []
  try {
    let input = arg('file')
    if (!input) {
      input = join(dir, 'input.bin')
      const size = Number(arg('size') ?? 20 * 1024 * 1024)
      if (!Number.isInteger(size) || size < 0)
        throw new Error(`--size must be a byte count, got ${arg('size')}`)
      await randomFile(input, size)
    }
    const network = `files-${randomBytes(4).toString('hex')}`
    const receiver = await createNode({ network, listen: ['/ip4/127.0.0.1/tcp/0'] })
    nodes.push(receiver)
    const sender = await createNode({
      network,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: receiver.addresses,
    })
    nodes.push(sender)
    const output = join(dir, 'received.bin')
    await receiver.join('files', {
      key: generateKey(),
      onTunnel: async (tunnel) => {
        const hash = createHash('sha256')
        const fh = await open(output, 'w')
        let bytes = 0
        try {
          for await (const chunk of tunnel) {
            hash.update(chunk)
            bytes += chunk.length
            await fh.write(chunk)
          }
        } finally {
          await fh.close()
        }
        const digest = hash.digest('hex')
        console.log(`receiver: sha256 ${digest} (${bytes} bytes written)`)
        await tunnel.send(digest)
        await tunnel.close()
      },
    })
    // Wait until the sender knows the member.
    const end = Date.now() + 10_000
    while (
      !sender
        .status()
        .clusters.find((c) => c.name === 'files')
        ?.members.some((m) => m.connected)
    ) {
      if (Date.now() > end) throw new Error('the receiver never became reachable')
      await new Promise((r) => setTimeout(r, 25))
    }
    const started = Date.now()
    const tunnel = await sender.tunnel('files', { timeout: 10_000 })
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(input, { highWaterMark: CHUNK })) {
      const bytes = chunk as Buffer
      hash.update(bytes)
      await tunnel.send(bytes)
    }
    await tunnel.close()
    const sent = hash.digest('hex')
    const size = (await stat(input)).size
    console.log(`sender:   sha256 ${sent} (${size} bytes sent)`)
    let reply = ''
    for await (const m of tunnel) reply += new TextDecoder().decode(m)
    const secs = (Date.now() - started) / 1000
    if (reply !== sent) throw new Error(`hash mismatch: sent ${sent}, receiver wrote ${reply}`)
    console.log(`match: ${(size / 1024 / 1024).toFixed(1)} MiB in ${secs.toFixed(2)} s`)
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await rm(dir, { recursive: true, force: true })
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`${err.name}: ${err.message}`)
    process.exit(1)
  },
)
