/**
 * `npm run demo` (scripts/demo.mjs after the build), the README's main job: it must finish in under
 * a minute, show each step, restore exactly batch A at the moment between the batches, verify at
 * level 4, and leave nothing behind (its temporary directory, its servers).
 */
import {execFile} from 'node:child_process'
import {mkdtemp, readdir, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {afterAll, describe, expect, it} from 'vitest'

import {repoRoot} from '../support/fixtures.js'

const run = promisify(execFile)
let tmp: string | undefined

afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

describe('npm run demo', () => {
  it('runs the main job in under a minute, restores exactly what was acknowledged before the moment, and cleans up', {timeout: 120_000}, async () => {
    tmp = await mkdtemp(join(tmpdir(), 'engram-demo-test-'))
    const started = Date.now()
    // TMPDIR is where the demo makes its working directory, so the test can see it go away.
    const {stdout} = await run(process.execPath, [join(repoRoot, 'scripts', 'demo.mjs')], {cwd: repoRoot, env: {...process.env, TMPDIR: tmp, NO_COLOR: '1'}, timeout: 110_000})
    const seconds = (Date.now() - started) / 1000
    expect(seconds).toBeLessThan(60)
    const steps = stdout.split('\n').filter((l) => /^\[\s*\d+\.\ds\] \d\. /.test(l)).map((l) => l.replace(/^\[\s*\d+\.\ds\] /, '').split(' ')[0])
    expect(steps).toEqual(['1.', '2.', '3.', '4.', '5.', '6.', '7.', '8.'])
    const batches = /batch A: (\d+) memories before the moment, batch B: (\d+) after it/.exec(stdout)
    expect(batches, stdout).not.toBeNull()
    const [a, b] = [Number(batches![1]), Number(batches![2])]
    expect(a).toBeGreaterThan(0)
    expect(b).toBeGreaterThan(0)
    expect(stdout).toContain(`batch A present: ${a}/${a}; batch B present: 0/${b} (expected all of A, none of B)`)
    expect(stdout).toMatch(/\d{8}T\d{6}Z-incr-[0-9a-f]{6}: level 4 OK \(\d+ objects, \d+ records, \d+ memories, \d+ sampled\) in /)
    expect(stdout).toMatch(/done: a hot full backup, an incremental of only the new bytes, and an exact point-in-time restore\n$/)
    expect(await readdir(tmp)).toEqual([])
  })
})
