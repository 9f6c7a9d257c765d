/** Plain tables (cli-table3) without colour codes, so they read the same in a terminal and in cron mail. */
import Table from 'cli-table3'

export function renderTable(head: string[], rows: Array<Array<string | number>>): string {
  const t = new Table({head, style: {head: [], border: []}})
  for (const r of rows) t.push(r.map(String))
  return t.toString()
}
