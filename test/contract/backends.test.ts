/**
 * Runs the RepositoryBackend contract against every backend, plus what is specific to one backend.
 * To add a backend, add one `describeBackendContract` call with a factory that gives each test a
 * fresh, empty place (a temp directory, a bucket prefix) and removes it in `cleanup`.
 */
import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdir, mkdtemp, readdir, rm, utimes, writeFile} from 'node:fs/promises'
import {hostname, tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {BackendError, readAll} from '../../src/lib/repo/backend.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {MemoryBackend} from '../../src/lib/repo/backends/memory.js'
import {describeBackendContract} from './backend-contract.js'

describeBackendContract('FsBackend', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'engram-contract-fs-'))
  return {backend: new FsBackend(join(dir, 'repo')), cleanup: () => rm(dir, {recursive: true, force: true})}
}, {writer: true})

describeBackendContract('MemoryBackend', async () => ({backend: new MemoryBackend(), cleanup: async () => {}}))

describe('FsBackend specifics', () => {
  const dirs: string[] = []
  afterEach(async () => {
    while (dirs.length > 0) await rm(dirs.pop()!, {recursive: true, force: true})
  })
  const fresh = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'engram-contract-fs-'))
    dirs.push(dir)
    return {dir, backend: new FsBackend(join(dir, 'repo'))}
  }

  it('rejects keys that are absolute or climb out with .., ., or empty segments (kind invalid, exit 2), touching nothing', async () => {
    const {dir, backend} = await fresh()
    await writeFile(join(dir, 'outside'), 'precious')
    const bad = ['../outside', 'a/../../outside', '/etc/passwd', 'a/./b', 'a//b', 'a/', '..', '.']
    for (const key of bad) {
      for (const op of [() => backend.put(key, Buffer.from('x')), () => backend.get(key), () => backend.stat(key), () => backend.delete([key])]) {
        let caught: unknown
        try {
          await op()
        } catch (error) {
          caught = error
        }
        expect(caught, `${key} must be refused`).toBeInstanceOf(BackendError)
        expect((caught as BackendError).kind).toBe('invalid')
        expect((caught as BackendError).exitCode).toBe(2)
      }
    }
    expect(existsSync(join(dir, 'outside'))).toBe(true)
    expect(existsSync(join(dir, 'repo'))).toBe(false)
  })

  it('writes objects as files under the root with mode 0600 and leaves no temporaries', async () => {
    const {dir, backend} = await fresh()
    await backend.put('backups/x/manifest.json', Buffer.from('{}'))
    const {stat} = await import('node:fs/promises')
    expect((await stat(join(dir, 'repo', 'backups', 'x', 'manifest.json'))).mode & 0o777).toBe(0o600)
    expect(await readdir(join(dir, 'repo', 'backups', 'x'))).toEqual(['manifest.json'])
  })

  it('hides and sweeps temporaries of crashed puts', async () => {
    const {dir, backend} = await fresh()
    await backend.put('backups/x/a', Buffer.from('a'))
    await writeFile(join(dir, 'repo', 'backups', 'x', 'b.tmp-0123456789ab'), 'partial')
    const keys: string[] = []
    for await (const o of backend.list('')) keys.push(o.key)
    expect(keys).toEqual(['backups/x/a'])
    expect(await backend.sweepTemporaries(0)).toBe(1)
    expect(await readdir(join(dir, 'repo', 'backups', 'x'))).toEqual(['a'])
  })

  it('lists and sweeps a repository of many directories completely (directories are walked concurrently), empty directories too', async () => {
    const {dir, backend} = await fresh()
    const expected: string[] = []
    for (let i = 0; i < 60; i++) {
      const id = `b${String(i).padStart(3, '0')}`
      for (const name of ['manifest.json', 'space.tar.zst']) {
        await backend.put(`backups/${id}/${name}`, Buffer.alloc(i + 1, 0x62))
        expected.push(`backups/${id}/${name}`)
      }
      // Every third backup holds a temporary of a crashed put beside its objects.
      if (i % 3 === 0) await writeFile(join(dir, 'repo', 'backups', id, 'late.tmp-0123456789ab'), 'partial')
    }
    for (let i = 0; i < 12; i++) {
      await mkdir(join(dir, 'repo', 'backups', `crashed${i}`), {recursive: true})
      await writeFile(join(dir, 'repo', 'backups', `crashed${i}`, 'manifest.json.tmp-0123456789ab'), 'partial')
    }
    // Runs killed before their first file: an empty directory each.
    for (let i = 0; i < 3; i++) await mkdir(join(dir, 'repo', 'backups', `empty${i}`))
    const listed: Array<{key: string; size: number}> = []
    for await (const o of backend.list('backups/')) listed.push({key: o.key, size: o.size})
    expected.sort()
    expect(listed.map((o) => o.key)).toEqual(expected)
    expect(listed.find((o) => o.key === 'backups/b059/space.tar.zst')?.size).toBe(60)
    expect(await backend.sweepTemporaries(0)).toBe(20 + 12)
    // The directories that held only a temporary are gone; the others keep exactly their objects.
    expect((await readdir(join(dir, 'repo', 'backups'))).filter((d) => d.startsWith('crashed') || d.startsWith('empty'))).toEqual([])
    expect((await readdir(join(dir, 'repo', 'backups'))).length).toBe(60)
    expect((await readdir(join(dir, 'repo', 'backups', 'b003'))).sort()).toEqual(['manifest.json', 'space.tar.zst'])
    expect(await backend.sweepTemporaries(0)).toBe(0)
  })

  it('names a temporary after its writer, and a sweep removes young ones only where that writer is gone from this host', async () => {
    const {dir, backend} = await fresh()
    const host = hostname().replace(/[^A-Za-z0-9]/g, '').slice(0, 32)
    // A put in progress: its temporary carries this host and this process.
    const writer = await backend.openWriter('a/k')
    await writer.write(Buffer.from('partial'))
    expect(await readdir(join(dir, 'repo', 'a'))).toEqual([expect.stringMatching(new RegExp(`^k\\.tmp-${host}-${process.pid}-[0-9a-f]{12}$`))])
    await writer.abort()
    // A process that has exited, for a writer that is gone.
    const dead = spawn(process.execPath, ['-e', '0'])
    await new Promise((resolve) => dead.on('exit', resolve))
    const names = {
      gone: `x.tmp-${host}-${dead.pid}-0123456789ab`,
      live: `x.tmp-${host}-${process.pid}-0123456789ab`,
      otherHost: `x.tmp-${host}x-${dead.pid}-0123456789ab`,
      unnamed: 'x.tmp-0123456789ab',
    }
    await mkdir(join(dir, 'repo', 'b'), {recursive: true})
    for (const name of Object.values(names)) await writeFile(join(dir, 'repo', 'b', name), 'partial')
    const hour = 3_600_000
    expect(await backend.sweepTemporaries(hour)).toBe(1)
    expect((await readdir(join(dir, 'repo', 'b'))).sort()).toEqual([names.live, names.otherHost, names.unnamed].sort())
    // Once old, every temporary goes, whoever wrote it.
    const old = new Date(Date.now() - 2 * hour)
    for (const name of [names.live, names.otherHost, names.unnamed]) await utimes(join(dir, 'repo', 'b', name), old, old)
    expect(await backend.sweepTemporaries(hour)).toBe(3)
    expect(existsSync(join(dir, 'repo', 'b'))).toBe(false)
  })

  it('reads what another FsBackend on the same root wrote (read-after-write across instances)', async () => {
    const {dir, backend} = await fresh()
    await backend.put('k', Buffer.from('shared'))
    const other = new FsBackend(join(dir, 'repo'))
    expect(await readAll(await other.get('k'))).toEqual(Buffer.from('shared'))
  })

  it('a put beside deletes that empty its directory succeeds (delete removes emptied directories)', async () => {
    // A new lease written while a waiter deletes the stale one (and an absent guard): before puts made
    // their directory again, nearly every round failed with ENOENT from mkdir or open.
    const {backend} = await fresh()
    const failures: unknown[] = []
    for (let round = 0; round < 200; round++) {
      await backend.put('locks/old', Buffer.from('stale'))
      const results = await Promise.allSettled([backend.delete(['locks/old']), backend.put('locks/new', Buffer.from(`lease ${round}`), {ifAbsent: true}), backend.delete(['locks/guard'])])
      for (const r of results) if (r.status === 'rejected') failures.push(r.reason)
      expect(await readAll(await backend.get('locks/new'))).toEqual(Buffer.from(`lease ${round}`))
      await backend.delete(['locks/new'])
    }
    expect(failures).toEqual([])
  })
})
