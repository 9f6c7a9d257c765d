/**
 * `backup full` and `backup incremental` without oclif.
 *
 * Why: a small incremental backup is mostly start-up. Loading @oclif/core and its config took about
 * 60-85 ms of a 1 GiB data directory's 0.24 s incremental on the bench machine, more than the
 * incremental's margin under its bar (5 % of the full backup). Cron runs these two commands every
 * few minutes; the others are run by people and keep oclif.
 *
 * This path takes only the plain forms of the two commands' flags (`--name value`, `--name=value`,
 * `-c value`) with values it can check itself. Anything else (help, an unknown flag or argument, a
 * value it would reject, a flag other than --space given twice, oclif's debug or JSON-by-environment
 * settings, JSON to a terminal, which oclif may colour) makes it return false, and bin/main.js hands
 * the command line to oclif, which runs it or prints its usual error. oclif's flag definitions stay
 * the reference: test/e2e/backup-fast-path.test.ts checks this table against them, parses command
 * lines with both, and runs the built CLI both ways.
 */
import {type BackupFlagValues, takeBackup} from './backup-run.js'
import {HASH_ALGORITHMS} from './lib/digest.js'
import {errorJson, errorText, toOpsError} from './lib/errors.js'
import {abortOnSignals} from './lib/process.js'
import {DEFAULT_LOCK_WAIT_MS} from './lib/repo/lock.js'
import {SSE_MODES} from './lib/repo/url.js'
import {parseBytes, parseDuration} from './lib/ui/format.js'
import {createReporter, withWarnings} from './lib/ui/reporter.js'

export interface FastFlag {
  /** Parses a value; undefined means "not taken here" (oclif then parses it, or says what is wrong). Absent for a boolean flag. */
  parse?: (text: string) => unknown
  char?: string
  multiple?: boolean
  required?: boolean
  env?: string
  default?: unknown
}

const text = (s: string): string => s
const oneOf =
  (options: readonly string[]) =>
  (s: string): string | undefined =>
    options.includes(s) ? s : undefined

/** The flags of `backup full|incremental`, including the global ones (--json, --quiet, --verbose). */
export const FAST_BACKUP_FLAGS: ReadonlyMap<string, FastFlag> = new Map<string, FastFlag>([
  ['data-dir', {parse: text, char: 'd', env: 'ENGRAM_DATA_DIR'}],
  ['repo', {parse: text, char: 'r', env: 'ENGRAM_OPS_REPO', required: true}],
  ['passphrase-file', {parse: text}],
  ['space', {parse: text, char: 's', multiple: true}],
  ['compression', {parse: text}],
  ['hash', {parse: oneOf(HASH_ALGORITHMS)}],
  ['label', {parse: text}],
  ['lock-wait', {parse: (s) => parseDuration(s) ?? undefined, default: DEFAULT_LOCK_WAIT_MS}],
  ['part-size', {parse: (s) => parseBytes(s) ?? undefined}],
  ['upload-concurrency', {parse: (s) => (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 64 ? Number(s) : undefined)}],
  ['storage-class', {parse: text}],
  ['sse', {parse: oneOf(SSE_MODES)}],
  ['sse-kms-key-id', {parse: text}],
  ['json', {}],
  ['quiet', {}],
  ['verbose', {}],
])

const BY_CHAR = new Map([...FAST_BACKUP_FLAGS].filter(([, f]) => f.char).map(([name, f]) => [f.char!, name]))

export interface FastBackupArgs {
  flags: BackupFlagValues
  json: boolean
  quiet: boolean
  verbose: boolean
}

/** The flags after `backup full|incremental`, or null where oclif should parse them. */
export function parseFastBackupArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): FastBackupArgs | null {
  // oclif's other way of asking for JSON output, and its debug output.
  if (env.ENGRAM_OPS_CONTENT_TYPE !== undefined || env.ENGRAM_OPS_DEBUG !== undefined || env.DEBUG !== undefined) return null
  const values = new Map<string, unknown>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    let name: string | undefined
    let inline: string | undefined
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=')
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq)
      inline = eq < 0 ? undefined : arg.slice(eq + 1)
    } else if (/^-[A-Za-z]$/.test(arg)) {
      name = BY_CHAR.get(arg[1]!)
    }
    const flag = name === undefined ? undefined : FAST_BACKUP_FLAGS.get(name)
    if (!flag || name === undefined) return null
    if (!flag.parse) {
      if (inline !== undefined || values.has(name)) return null
      values.set(name, true)
      continue
    }
    const raw = inline ?? argv[++i]
    if (raw === undefined || raw === '' || raw.startsWith('-')) return null
    const value = flag.parse(raw)
    if (value === undefined) return null
    if (flag.multiple) values.set(name, [...((values.get(name) as unknown[] | undefined) ?? []), value])
    else if (values.has(name)) return null
    else values.set(name, value)
  }
  for (const [name, flag] of FAST_BACKUP_FLAGS) {
    if (values.has(name)) continue
    const fromEnv = flag.env === undefined ? undefined : env[flag.env]
    if (fromEnv !== undefined) {
      const value = fromEnv === '' ? undefined : flag.parse?.(fromEnv)
      if (value === undefined) return null
      values.set(name, flag.multiple ? [value] : value)
    } else if (flag.default !== undefined) {
      values.set(name, flag.default)
    }
    if (flag.required && !values.has(name)) return null
  }
  const {json, quiet, verbose, ...flags} = Object.fromEntries(values)
  return {flags: flags as unknown as BackupFlagValues, json: json === true, quiet: quiet === true, verbose: verbose === true}
}

/**
 * Runs `backup full|incremental` (argv: the command line after the program's name) as its oclif
 * command would, with the same output, JSON and exit codes; false if oclif should run it instead.
 */
export async function runBackupWithoutOclif(argv: readonly string[]): Promise<boolean> {
  const [topic, type, ...rest] = argv
  if (topic !== 'backup' || (type !== 'full' && type !== 'incremental')) return false
  const args = parseFastBackupArgs(rest)
  if (!args || (args.json && process.stdout.isTTY)) return false
  const abort = new AbortController()
  abortOnSignals(abort)
  const reporter = createReporter({json: args.json, quiet: args.quiet})
  const out = (line: string) => {
    if (!args.json) process.stdout.write(`${line}\n`)
  }
  try {
    const result = await takeBackup(type, args.flags, {reporter, signal: abort.signal, out})
    if (args.json) process.stdout.write(`${JSON.stringify(withWarnings(result, reporter), null, 2)}\n`)
  } catch (error) {
    const e = toOpsError(error)
    process.exitCode = e.exitCode
    if (args.json) process.stdout.write(`${JSON.stringify(errorJson(e), null, 2)}\n`)
    else {
      process.stderr.write(errorText(e, args.verbose))
      // As oclif does after printing an error: whatever is still pending is not waited for.
      process.exit(e.exitCode)
    }
  }
  return true
}
