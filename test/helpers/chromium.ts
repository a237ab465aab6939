/**
 * The system's chromium for browser tests (Debian's package; never a downloaded browser):
 * where it is, and a headless launch with a throw-away profile. Without it, the calling test
 * file skips and says why.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import puppeteer, { type Browser } from 'puppeteer-core'

const candidates = process.env.PLEXUS_CHROMIUM
  ? [process.env.PLEXUS_CHROMIUM]
  : ['/usr/bin/chromium', '/usr/bin/chromium-browser']

/** The chromium executable (`PLEXUS_CHROMIUM` or Debian's), or undefined after a warning naming `testFile`. */
export function findChromium(testFile: string): string | undefined {
  const found = candidates.find((p) => existsSync(p))
  if (!found)
    console.warn(
      `${testFile} skipped: no chromium at ${candidates.join(' or ')} (install it: apt-get install -y chromium; .ci/run does as root)`,
    )
  return found
}

/** A headless chromium with a fresh profile; `close` ends it and removes the profile. */
export async function launchChromium(
  executablePath: string,
): Promise<{ browser: Browser; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'plexus-chromium-'))
  try {
    const browser = await puppeteer.launch({
      executablePath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${profile}`,
      ],
    })
    return {
      browser,
      close: async () => {
        await browser.close().catch(() => {})
        rmSync(profile, { recursive: true, force: true })
      },
    }
  } catch (err) {
    rmSync(profile, { recursive: true, force: true })
    throw err
  }
}
