/**
 * Runs the built CLI (bin/run.js) as a user would and collects its output. Asynchronous on purpose:
 * a test that runs a server in-process (s3rver, engine serve) must not block its event loop.
 * The child inherits the environment with NO_COLOR and CI set and without ENGRAM_DATA_DIR and
 * ENGRAM_OPS_REPO (so a developer's shell cannot leak into a test), unless `env` gives them.
 */
import {spawn} from 'node:child_process'
import {join} from 'node:path'

import {repoRoot} from './fixtures.js'

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

export interface CliOptions {
  cwd?: string
  env?: Record<string, string | undefined>
}

export function runCli(args: string[], options: CliOptions = {}): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1', CI: '1'}
  delete env.ENGRAM_DATA_DIR
  delete env.ENGRAM_OPS_REPO
  Object.assign(env, options.env)
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'run.js'), ...args], {cwd: options.cwd ?? repoRoot, env, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({code, stdout, stderr}))
  })
}
