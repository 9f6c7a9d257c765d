/**
 * Progress and notices for long work, always on stderr. On a TTY (and not under --json or CI) it
 * draws a one-line progress display; otherwise it prints plain timestamped lines that read well in
 * cron mail and journald. `lib` code receives a Reporter and never writes to stdout itself.
 */
import {formatBytes} from './format.js'

export interface Progress {
  phase: string
  done: number
  total?: number
  unit?: 'bytes' | 'items'
}

export interface Reporter {
  info(message: string): void
  warn(message: string): void
  progress(p: Progress): void
  /** Warnings issued so far (`withWarnings` puts them into a command's JSON result). */
  readonly warnings: string[]
}

export interface ReporterOptions {
  json: boolean
  quiet: boolean
  stream?: NodeJS.WriteStream
  env?: NodeJS.ProcessEnv
}

export function createReporter(o: ReporterOptions): Reporter {
  const stream = o.stream ?? process.stderr
  const env = o.env ?? process.env
  const interactive = Boolean(stream.isTTY) && !o.json && !env.CI && env.TERM !== 'dumb'
  const warnings: string[] = []
  let lastDraw = 0
  let drawn = false
  const clear = () => {
    if (drawn) stream.write('\r\u001B[2K')
    drawn = false
  }
  const line = (text: string) => {
    clear()
    stream.write(interactive ? `${text}\n` : `${new Date().toISOString()} ${text}\n`)
  }
  return {
    warnings,
    info(message) {
      if (!o.json && !o.quiet) line(message)
    },
    warn(message) {
      warnings.push(message)
      if (!o.json) line(`warning: ${message}`)
    },
    progress(p) {
      if (!interactive || o.quiet) return
      const now = Date.now()
      if (now - lastDraw < 100 && p.total !== p.done) return
      lastDraw = now
      const fmt = (v: number) => (p.unit === 'bytes' ? formatBytes(v) : String(v))
      const pct = p.total ? ` ${((100 * p.done) / p.total).toFixed(0).padStart(3)}%` : ''
      stream.write(`\r\u001B[2K${p.phase}${pct} ${fmt(p.done)}${p.total ? ` / ${fmt(p.total)}` : ''}`)
      drawn = true
    },
  }
}

/**
 * A command's result as printed under --json, where the reporter prints nothing: the warnings given
 * on the way (a damaged record, a broken stale lock, a moved-aside restore target) are its `warnings`,
 * always there, empty or not, so that the shape does not change with what happened. A result that
 * lists its own keeps them; arrays and other values are printed as they are.
 */
export function withWarnings(result: unknown, reporter: Pick<Reporter, 'warnings'> | undefined): unknown {
  if (!result || typeof result !== 'object' || Array.isArray(result) || 'warnings' in result) return result
  return {...result, warnings: [...(reporter?.warnings ?? [])]}
}

/** A reporter that records everything; for tests and for library callers that want silence. */
export function silentReporter(): Reporter {
  return {warnings: [], info() {}, warn(m) { this.warnings.push(m) }, progress() {}}
}
