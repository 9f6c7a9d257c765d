/**
 * Runs the built CLI (bin/run.js) as a user would and collects its output. Asynchronous on purpose:
 * a test that runs a server in-process (s3rver, engine serve) must not block its event loop.
 * The child inherits the environment with NO_COLOR and CI set and without ENGRAM_DATA_DIR,
 * ENGRAM_OPS_REPO and the passphrase variables (so a developer's shell cannot leak into a test),
 * unless `env` gives them; an `env` value of undefined removes a variable.
 */
import {spawn} from 'node:child_process'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

import {repoRoot} from './fixtures.js'

export interface CliRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

export interface CliOptions {
  cwd?: string
  env?: Record<string, string | undefined>
  /** Kill the CLI (SIGKILL) after this long; default 90 s. */
  timeoutMs?: number
  /** Written to its standard input (closed in any case: the CLI must never wait for a person). */
  input?: string
  /** Run the command through oclif even where bin/main.js would not load it (backup full|incremental). */
  throughOclif?: boolean
}

/** Node's arguments that run the built CLI: bin/run.js, or oclif's execute() on bin/main.js's package. */
export function cliNodeArgs(args: string[], throughOclif = false): string[] {
  if (!throughOclif) return [join(repoRoot, 'bin', 'run.js'), ...args]
  const main = pathToFileURL(join(repoRoot, 'bin', 'main.js')).href
  return ['--input-type=module', '-e', `const {execute} = await import('@oclif/core'); await execute({dir: ${JSON.stringify(main)}, args: ${JSON.stringify(args)}})`]
}

export function runCli(args: string[], options: CliOptions = {}): Promise<CliRun> {
  const started = Date.now()
  const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1', CI: '1'}
  for (const k of ['ENGRAM_DATA_DIR', 'ENGRAM_OPS_REPO', 'ENGRAM_OPS_PASSPHRASE', 'ENGRAM_OPS_NEW_PASSPHRASE']) delete env[k]
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cliNodeArgs(args, options.throughOclif), {cwd: options.cwd ?? repoRoot, env, stdio: ['pipe', 'pipe', 'pipe']})
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    child.stdin.end(options.input ?? '')
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 90_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), ms: Date.now() - started})
    })
  })
}

/** stderr with oclif's line wrapping (and its "›" continuation marks) undone. */
export const unwrap = (text: string) => text.replace(/\s+›?\s*/g, ' ')
