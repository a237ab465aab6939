// Bundles the relay client for browsers into one ES module, dist/browser/plexus-relay.js
// (part of `npm run build`, after tsc). The Node-only modules on the client's path are
// swapped for the browser stand-ins in relay/browser/, and `Buffer` is the tiny shim there.
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const swaps = new Map([
  [join(root, 'src/util/keys.js'), join(root, 'relay/browser/keys.ts')],
  [join(root, 'src/cluster/capability.js'), join(root, 'relay/browser/capability.ts')],
  [join(root, 'relay/wire/transport-tcp.js'), join(root, 'relay/browser/transport-tcp.ts')],
])

await build({
  entryPoints: [join(root, 'relay/browser/index.ts')],
  outfile: join(root, 'dist/browser/plexus-relay.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  inject: [join(root, 'relay/browser/buffer.ts')],
  logLevel: 'warning',
  banner: { js: '// Plexus relay client for browsers (plexus/relay): see docs/relay-protocol.md' },
  plugins: [
    {
      name: 'plexus-browser-swaps',
      setup(b) {
        b.onResolve({ filter: /\.js$/ }, (args) => {
          if (!args.path.startsWith('.')) return undefined
          const swap = swaps.get(resolve(args.resolveDir, args.path))
          return swap ? { path: swap } : undefined
        })
        b.onResolve({ filter: /^node:/ }, (args) => ({
          errors: [{ text: `${args.path} (imported by ${args.importer}) has no place in the browser bundle` }],
        }))
      },
    },
  ],
})
