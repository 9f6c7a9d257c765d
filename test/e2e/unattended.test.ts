/**
 * Cron, systemd timers and Kubernetes CronJobs run the CLI with no TTY and no person: no prompts, no
 * spinners or escape codes, plain timestamped lines on stderr, --quiet, and exit codes that mean
 * something. Run with CI unset and set.
 */
import {execFile} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {repoRoot} from '../support/fixtures.js'

const run = promisify(execFile)
const cli = join(repoRoot, 'bin', 'run.js')
const work = mkdtempSync(join(tmpdir(), 'engram-ops-unattended-'))
const data = join(work, 'data')

interface Result {
  code: number
  stdout: string
  stderr: string
}

async function ops(args: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  try {
    const r = await run(process.execPath, [cli, ...args], {env, timeout: 60_000})
    return {code: 0, stdout: r.stdout, stderr: r.stderr}
  } catch (error) {
    const e = error as {code: number; stdout: string; stderr: string}
    return {code: e.code, stdout: e.stdout, stderr: e.stderr}
  }
}

beforeAll(async () => {
  const r = await ops(['engine', 'generate', '--data-dir', data, '--spaces', '2', '--episodes', '200'], process.env)
  expect(r.code).toBe(0)
})
afterAll(() => rmSync(work, {recursive: true, force: true}))

const ESC = String.fromCharCode(27)
const TIMESTAMPED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z /

for (const ci of [undefined, 'true']) {
  describe(`no TTY, CI ${ci ?? 'unset'}`, () => {
    const env: NodeJS.ProcessEnv = {...process.env, CI: ci, ENGRAM_OPS_REPO: join(work, `repo-${ci ?? 'unset'}`), ENGRAM_DATA_DIR: data}
    if (ci === undefined) delete env.CI

    it('backups print plain timestamped lines on stderr, the result on stdout, no escape codes', async () => {
      expect((await ops(['repo', 'init'], env)).code).toBe(0)
      const r = await ops(['backup', 'full'], env)
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/^backup \d{8}T\d{6}Z-full-[0-9a-f]{6} \(full\) complete: 2 files/)
      const lines = r.stderr.trim().split('\n')
      expect(lines.length).toBeGreaterThanOrEqual(3)
      for (const l of lines) expect(l).toMatch(TIMESTAMPED)
      expect(r.stdout + r.stderr).not.toContain(ESC)
      expect(r.stdout + r.stderr).not.toContain('\r')
    })

    it('--quiet leaves only the result line', async () => {
      const r = await ops(['backup', 'incremental', '--quiet'], env)
      expect(r.code).toBe(0)
      expect(r.stderr).toBe('')
      expect(r.stdout.trim().split('\n')).toHaveLength(1)
    })

    it('--json prints one JSON document and nothing on stderr', async () => {
      const r = await ops(['backup', 'list', '--json'], env)
      expect(r.code).toBe(0)
      expect(r.stderr).toBe('')
      const j = JSON.parse(r.stdout)
      expect(j.backups.map((b: {type: string}) => b.type)).toEqual(['full', 'incremental'])
    })

    it('never prompts: a destructive command without --yes fails with its exit code', async () => {
      const target = join(work, `occupied-${ci ?? 'unset'}`)
      await ops(['restore', '--latest', '--to', target], env)
      const r = await ops(['restore', '--latest', '--to', target], env)
      expect(r.code).toBe(2)
      expect(r.stderr).toContain(`restore target ${target} is not empty`)
      expect(r.stderr).toContain('--yes')
    })

    it('a missing repository exits 11 and says what to do', async () => {
      const r = await ops(['backup', 'full', '--repo', join(work, 'nowhere')], env)
      expect(r.code).toBe(11)
      expect(r.stderr).toContain(`no engram-ops repository at file://${join(work, 'nowhere')}`)
      expect(r.stderr).toContain('repo init')
      expect(r.stderr).not.toContain('    at ') // no stack trace without --verbose
    })
  })
}
