/**
 * The two renames that put a restore in place of a non-empty target (`restore --yes`): when the
 * second fails, the first is undone; when that fails too, the error says where both copies are and
 * neither is touched. The failures are injected into the rename function; the directories are real.
 */
import {mkdir, readFile, rename, writeFile} from 'node:fs/promises'
import {existsSync} from 'node:fs'
import {join} from 'node:path'
import {beforeEach, describe, expect, it} from 'vitest'

import {replaceTarget} from '../../src/lib/restore/restore.js'
import {scratchDirs} from '../support/files.js'

const scratch = scratchDirs('engram-replace')
let root: string
let target: string
let staging: string
let movedTo: string

beforeEach(async () => {
  root = await scratch('target')
  target = join(root, 'engram')
  staging = join(root, '.engram.engram-ops-restore-0000')
  movedTo = join(root, 'engram.replaced-2026-11-28T000000Z')
  for (const [dir, content] of [[target, 'previous'], [staging, 'restored']]) {
    await mkdir(dir)
    await writeFile(join(dir, 'marker'), content)
  }
})

const marker = (dir: string) => readFile(join(dir, 'marker'), 'utf8')

/** rename, failing (EBUSY) whenever `from` is one of `failing`. */
const failingRename = (...failing: string[]) =>
  (async (from: string, to: string) => {
    if (failing.includes(from)) throw Object.assign(new Error(`EBUSY: resource busy, rename '${from}' -> '${to}'`), {code: 'EBUSY'})
    return rename(from, to)
  }) as typeof rename

describe('replaceTarget', () => {
  it('moves the target aside and the staging directory into its place', async () => {
    await replaceTarget(staging, target, movedTo)
    expect([await marker(target), await marker(movedTo), existsSync(staging)]).toEqual(['restored', 'previous', false])
  })

  it('puts the previous contents back when the staging directory cannot be moved into place', async () => {
    const error = await replaceTarget(staging, target, movedTo, failingRename(staging)).catch((e: unknown) => e)
    expect((error as {code?: string}).code).toBe('EBUSY')
    expect([await marker(target), await marker(staging), existsSync(movedTo)]).toEqual(['previous', 'restored', false])
  })

  it('when the previous contents cannot be put back either, names where both copies are and leaves them', async () => {
    const error = await replaceTarget(staging, target, movedTo, failingRename(staging, movedTo)).catch((e: unknown) => e)
    expect(error).toMatchObject({
      code: 'RESTORE_SWAP_FAILED',
      exitCode: 1,
      subject: target,
      message: `restore could not move ${staging} into place as ${target} (EBUSY: resource busy, rename '${staging}' -> '${target}'), nor the previous contents back from ${movedTo}`,
    })
    expect((error as {suggestions: string[]}).suggestions).toEqual([`Nothing is lost: the restored data is in ${staging} and the previous contents in ${movedTo}; rename one of them to ${target}.`])
    expect([existsSync(target), await marker(staging), await marker(movedTo)]).toEqual([false, 'restored', 'previous'])
  })
})
