/**
 * The hash a manifest records. BLAKE3 by default, sha256 with `--hash sha256`, and repositories
 * written before the algorithm was recorded (manifest format 1: sha256, in `sha256`-named fields)
 * still restore, verify, and serve as the parent of a BLAKE3 incremental. Such a chain mixes both
 * algorithms, and every manifest is checked with its own.
 */
import {execFileSync} from 'node:child_process'
import {mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {runBackup} from '../../src/lib/backup/backup.js'
import {generateData} from '../../src/lib/engine/generate.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import type {Compression} from '../../src/lib/repo/compression.js'
import {selfChecksum} from '../../src/lib/repo/manifest.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {verifyBackup} from '../../src/lib/restore/verify.js'
import type {Reporter} from '../../src/lib/ui/reporter.js'
import {runCli} from '../support/cli.js'
import {blake3, type Json} from '../support/fixtures.js'

const SEC = 1_000_000_000n
const HOUR = 3600n * SEC
const T0 = 1_795_000_000n * SEC
const ZSTD: Compression = {codec: 'zstd', level: 3}
const SPACES = ['alpha', 'beta']

const tmpDirs: string[] = []
async function tmp(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `engram-hash-${prefix}-`))
  tmpDirs.push(d)
  return d
}
afterAll(async () => {
  while (tmpDirs.length > 0) await rm(tmpDirs.pop()!, {recursive: true, force: true})
})

const quiet = (): Reporter => ({warnings: [], info: () => {}, warn: () => {}, progress: () => {}}) as unknown as Reporter

/** The sha256sum binary's digest of a file. */
const sha256sum = (path: string) => execFileSync('sha256sum', [path]).toString().split(' ')[0]

/** Every WAL file of a data dir: `space/file` -> its bytes. */
async function walFiles(root: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  for (const space of SPACES) for (const f of (await readdir(join(root, space, 'wal'))).sort()) out.set(`${space}/${f}`, await readFile(join(root, space, 'wal', f)))
  return out
}

/** A format-2 sha256 manifest rewritten as engram-ops wrote it before format 2, sealed anew. */
function toFormat1(m: Json): Json {
  const {hashAlgorithm, ...rest} = m
  expect(hashAlgorithm).toBe('sha256')
  const v1 = {
    ...rest,
    format: 'engram-ops-backup/1',
    checksum: '',
    spaces: m.spaces.map((sp: Json) => ({
      ...sp,
      archive: sp.archive && {key: sp.archive.key, size: sp.archive.size, sha256: sp.archive.hash, uncompressedSize: sp.archive.uncompressedSize},
      files: sp.files.map(({hash, headHash, tailHash, ...f}: Json) => ({...f, sha256: hash, headSha256: headHash, tailSha256: tailHash})),
      samples: sp.samples.map(({payloadHash, ...s}: Json) => ({...s, payloadSha256: payloadHash})),
    })),
  }
  v1.checksum = selfChecksum(v1)
  expect(JSON.stringify(v1)).not.toMatch(/"(hash|headHash|tailHash|payloadHash|hashAlgorithm)"/)
  return v1
}

describe('hash algorithms', {timeout: 120_000}, () => {
  it('--hash sha256: the manifest says so, the sha256sum binary agrees with every object and file hash, and restore and level 3 pass', async () => {
    const root = await tmp('sha256')
    const data = join(root, 'data')
    await generateData({root: data, spaces: SPACES, episodes: 120, seed: 3, startNs: T0, windowNs: HOUR, fsync: false})
    const repoDir = join(root, 'repo')
    expect((await runCli(['repo', 'init', '--repo', repoDir])).code).toBe(0)
    const b = await runCli(['backup', 'full', '--data-dir', data, '--repo', repoDir, '--hash', 'sha256', '--json'])
    expect(b.code, b.stderr).toBe(0)
    const id = JSON.parse(b.stdout).id as string
    const m = JSON.parse(await readFile(join(repoDir, 'backups', id, 'manifest.json'), 'utf8'))
    expect([m.format, m.hashAlgorithm]).toEqual(['engram-ops-backup/2', 'sha256'])
    const source = await walFiles(data)
    for (const sp of m.spaces) {
      expect(sp.archive.hash).toBe(sha256sum(join(repoDir, ...sp.archive.key.split('/'))))
      for (const f of sp.files) {
        // Whole files were captured (nothing was being written), so the file's sha256sum is the capture's.
        expect([f.offset, f.length]).toEqual([0, source.get(`${sp.space}/${f.name}`)!.length])
        expect(f.hash).toBe(sha256sum(join(data, sp.space, 'wal', f.name)))
      }
    }
    const show = await runCli(['backup', 'show', id, '--repo', repoDir])
    expect(show.stdout).toMatch(new RegExp(`space alpha: backups/${id}/alpha\\.tar\\.zst \\S+ \\S+ sha256 ${m.spaces[0].archive.hash}`))
    const v = await runCli(['backup', 'verify', id, '--level', '3', '--repo', repoDir])
    expect(v.code, v.stdout + v.stderr).toBe(0)
    const to = join(root, 'restored')
    const r = await runCli(['restore', id, '--repo', repoDir, '--to', to])
    expect(r.code, r.stderr).toBe(0)
    expect(await walFiles(to)).toEqual(source)
  })

  it('a format-1 repository restores and verifies; a BLAKE3 incremental on it stores only new bytes; the mixed chain restores byte for byte; damage is found with sha256 in the old objects', async () => {
    const root = await tmp('v1')
    const data = join(root, 'data')
    await generateData({root: data, spaces: SPACES, episodes: 150, seed: 11, startNs: T0, windowNs: HOUR, fsync: false})
    const repoDir = join(root, 'repo')
    const first = await Repository.init(new FsBackend(repoDir), ZSTD)
    const full = await runBackup({repo: first, dataDir: data, type: 'full', spaces: [], compression: ZSTD, hashAlgorithm: 'sha256', lockWaitMs: 5000, reporter: quiet()})
    const manifestPath = join(repoDir, 'backups', full.id, 'manifest.json')
    await writeFile(manifestPath, `${JSON.stringify(toFormat1(JSON.parse(await readFile(manifestPath, 'utf8'))), null, 2)}\n`)

    const repo = await Repository.open(new FsBackend(repoDir))
    const old = await repo.manifest(full.id)
    expect([old.format, old.hashAlgorithm]).toEqual(['engram-ops-backup/1', 'sha256'])
    const l3 = await verifyBackup(repo, full.id, 3, quiet())
    expect(l3.findings).toEqual([])
    expect(l3.ok).toBe(true)

    // Appended records, then an incremental with the default hash on the format-1 parent.
    const before = await walFiles(data)
    await generateData({root: data, spaces: SPACES, episodes: 40, seed: 12, startNs: T0 + 2n * HOUR, windowNs: HOUR, append: true, fsync: false})
    const after = await walFiles(data)
    const incr = await runBackup({repo, dataDir: data, type: 'incremental', spaces: [], compression: ZSTD, lockWaitMs: 5000, reporter: quiet()})
    expect([incr.type, incr.parent]).toEqual(['incremental', full.id])
    const m = await repo.manifest(incr.id)
    expect([m.format, m.hashAlgorithm]).toEqual(['engram-ops-backup/2', 'blake3'])
    for (const sp of m.spaces) {
      // The parent's files were recognised through their sha256 head and tail: nothing rewritten,
      // and only the appended bytes captured, with their BLAKE3.
      expect(sp.rewritten).toEqual([])
      expect(sp.files.length).toBe(1)
      const f = sp.files[0]
      const key = `${sp.space}/${f.name}`
      expect([f.offset, f.end]).toEqual([before.get(key)!.length, after.get(key)!.length])
      expect(f.hash).toBe(blake3(after.get(key)!.subarray(f.offset)))
    }

    const to = join(root, 'restored')
    const r = await runCli(['restore', incr.id, '--repo', repoDir, '--to', to])
    expect(r.code, r.stderr).toBe(0)
    expect(await walFiles(to)).toEqual(after)
    const mixed = await verifyBackup(repo, incr.id, 3, quiet())
    expect(mixed.findings).toEqual([])

    // A flipped byte in the format-1 object is found at level 2, by its sha256.
    const objectPath = join(repoDir, ...old.spaces[0].archive!.key.split('/'))
    const bytes = await readFile(objectPath)
    bytes[bytes.length >> 1] ^= 0x01
    await writeFile(objectPath, bytes)
    const l2 = await verifyBackup(repo, incr.id, 2, quiet())
    expect(l2.findings).toEqual([{backup: incr.id, level: 2, object: old.spaces[0].archive!.key, problem: expect.stringMatching(/^sha256 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}$/)}])
  })
})
