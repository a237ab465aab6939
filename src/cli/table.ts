/** Plain-text tables for the CLI's human-readable output. */

/** Left-aligned columns with two spaces between them, each line indented by `indent`. */
export function table(rows: string[][], indent = '  '): string {
  const widths: number[] = []
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length)
    })
  }
  return rows
    .map((r) =>
      `${indent}${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`.trimEnd(),
    )
    .join('\n')
}
