/**
 * bin/run.js as an installed command runs it: executed directly (and through a symlink, as npm links
 * it), its first lines are read by sh, which sets glibc's malloc thresholds and execs Node on the same
 * file. A preload module reports the environment Node's process sees.
 */
import {execFile, execFileSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, describe, expect, it} from 'vitest'

import {repoRoot} from '../support/fixtures.js'

const run = promisify(execFile)
const cli = join(repoRoot, 'bin', 'run.js')
const work = mkdtempSync(join(tmpdir(), 'engram-ops-launcher-'))
const probe = join(work, 'probe.mjs')
writeFileSync(probe, "process.stderr.write(`malloc ${process.env.MALLOC_MMAP_THRESHOLD_} ${process.env.MALLOC_TRIM_THRESHOLD_}\\n`)\n")
afterAll(() => rmSync(work, {recursive: true, force: true}))

/** Runs `file` as a program (its #! line decides), with the test's Node first on PATH. */
async function launch(file: string, extraEnv: NodeJS.ProcessEnv = {}, args = ['--version']): Promise<{stdout: string; stderr: string}> {
  const env = {...probeEnv(), PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, ...extraEnv}
  return run(file, args, {env, timeout: 20_000})
}

/** The test's environment without malloc settings of its own, with the probe preloaded. */
function probeEnv(): NodeJS.ProcessEnv {
  const env = {...process.env, NODE_OPTIONS: `--import=${probe}`}
  for (const name of ['MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'NODE_COMPILE_CACHE', 'NODE_DISABLE_COMPILE_CACHE']) delete env[name]
  return env
}

describe('launcher', () => {
  it('sets the malloc thresholds and runs the CLI', async () => {
    const r = await launch(cli)
    expect(r.stderr).toBe('malloc 33554432 134217728\n')
    expect(r.stdout).toMatch(/^engram-ops\/\d+\.\d+\.\d+ /)
  })

  it('keeps values the operator already set', async () => {
    const r = await launch(cli, {MALLOC_TRIM_THRESHOLD_: '4096'})
    expect(r.stderr).toBe('malloc 33554432 4096\n')
  })

  it('works through a symlink, as npm installs the command (in a directory with a space in its name)', async () => {
    mkdirSync(join(work, 'a bin'))
    const link = join(work, 'a bin', 'engram-ops')
    symlinkSync(cli, link)
    const r = await launch(link)
    expect(r.stderr).toBe('malloc 33554432 134217728\n')
    expect(r.stdout).toMatch(/^engram-ops\/\d+\.\d+\.\d+ /)
  })

  it('keeps the compile cache in XDG_CACHE_HOME/engram-ops, not in the temporary directory', async () => {
    const cache = join(work, 'cache')
    const tmp = join(work, 'tmp')
    mkdirSync(tmp)
    await launch(cli, {XDG_CACHE_HOME: cache, TMPDIR: tmp})
    const root = join(cache, 'engram-ops', 'node-compile-cache')
    // Node keeps one directory per Node version and set of V8 flags in it.
    const [dir, ...others] = readdirSync(root)
    expect(others).toEqual([])
    const cached = readdirSync(join(root, dir!)).length
    expect(cached).toBeGreaterThan(0)
    // A backup (here one that fails at once: no repository) runs without oclif and adds its modules
    // to the same cache.
    await expect(launch(cli, {XDG_CACHE_HOME: cache, TMPDIR: tmp}, ['backup', 'incremental', '--repo', join(work, 'none'), '--data-dir', work])).rejects.toMatchObject({code: 11})
    expect(readdirSync(root)).toEqual([dir])
    expect(readdirSync(join(root, dir!)).length).toBeGreaterThan(cached)
    expect(readdirSync(tmp)).toEqual([])
  })

  it.runIf(process.platform === 'linux')('starts where the cache cannot be made (Node spins on a recursive mkdir under /proc)', async () => {
    const r = await launch(cli, {HOME: '/proc', XDG_CACHE_HOME: ''})
    expect(r.stdout).toMatch(/^engram-ops\/\d+\.\d+\.\d+ /)
  })

  // The machines this runs on have Debian's Node 20 at /usr/bin/node beside the project's newer one.
  const oldNode = '/usr/bin/node'
  const oldVersion = existsSync(oldNode) ? execFileSync(oldNode, ['--version']).toString().trim() : ''
  it.runIf(/^v(1\d|2[01])\.|^v22\.(\d|1[0-4])\./.test(oldVersion))(`with an older Node (${oldVersion || 'none found'}) it says what it needs and exits 10`, async () => {
    const err = await run(cli, ['--version'], {env: {...probeEnv(), PATH: `${dirname(oldNode)}:/bin`}, timeout: 20_000}).catch((e: unknown) => e)
    expect(err).toMatchObject({code: 10, stdout: ''})
    expect((err as {stderr: string}).stderr).toContain(`engram-ops needs Node.js 22.15 or newer (it uses zstd from node:zlib); this is Node.js ${oldVersion.slice(1)}`)
  })

  it('run as `node bin/run.js`, Node skips the sh lines', async () => {
    const r = await run(process.execPath, [cli, '--version'], {env: probeEnv(), timeout: 30_000})
    expect(r.stderr).toBe('malloc undefined undefined\n')
    expect(r.stdout).toMatch(/^engram-ops\/\d+\.\d+\.\d+ /)
  })
})
