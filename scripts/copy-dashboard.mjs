// Copies the web dashboard's files (dashboard/) and uPlot (from node_modules/uplot/dist) into
// dist/dashboard/, where src/observe/dashboard.ts serves them from (part of `npm run build`,
// after tsc): the package ships the page and its chart library, no CDN.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const out = join(root, 'dist/dashboard')
mkdirSync(out, { recursive: true })
for (const f of readdirSync(join(root, 'dashboard'))) {
  if (/\.(html|js|css)$/.test(f)) copyFileSync(join(root, 'dashboard', f), join(out, f))
}
const uplot = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'))
for (const f of ['uPlot.iife.min.js', 'uPlot.min.css']) copyFileSync(join(uplot, f), join(out, f))
