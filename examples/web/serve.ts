/**
 * A tiny static server for the example page (examples/web/): serves its files and the
 * browser client bundle (`dist/browser/plexus-relay.js`, from `npm run build`) on
 * 127.0.0.1, so the page runs from an origin of its own. The node must allow that origin:
 *
 *   npm run build
 *   npx plexus node --relay-ws-port 55580 --relay-ws-origin http://127.0.0.1:8080
 *   node dist/examples/web/serve.js 8080    # then open http://127.0.0.1:8080/?relay=ws://127.0.0.1:55580/
 *
 * (Or let the node serve the page itself: `plexus node --relay-ws-port 55580
 * --relay-ws-static examples/web`, then open http://127.0.0.1:55580/.)
 */
import { createReadStream, existsSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { extname, join, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = fileURLToPath(new URL('.', import.meta.url))
/** The project root, whether this runs from examples/web/ or dist/examples/web/. */
const root = existsSync(join(here, 'index.html')) ? resolve(here, '../..') : resolve(here, '../../..')

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.css': 'text/css; charset=utf-8',
}

/** Serves examples/web (and /plexus-relay.js) on 127.0.0.1:`port` (0: any free port). */
export async function startStaticServer(port = 0): Promise<{ server: Server; origin: string }> {
  const dir = join(root, 'examples/web')
  const bundleDir = join(root, 'dist/browser')
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
    const base = path.startsWith('/plexus-relay.js') ? bundleDir : dir
    const file = resolve(base, `.${path === '/' ? '/index.html' : path}`)
    if (!file.startsWith(base + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found\n')
      return
    }
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' })
    createReadStream(file).pipe(res)
  })
  await new Promise<void>((ok) => server.listen(port, '127.0.0.1', ok))
  const addr = server.address()
  const p = addr && typeof addr === 'object' ? addr.port : port
  return { server, origin: `http://127.0.0.1:${p}` }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const { origin } = await startStaticServer(Number(process.argv[2] ?? 8080))
  console.log(`example page at ${origin}/ (add ?relay=ws://127.0.0.1:PORT/ for the node's --relay-ws-port)`)
}
