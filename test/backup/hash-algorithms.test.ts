/**
 * The hash a manifest records. BLAKE3 by default, sha256 with `--hash sha256`, and repositories
 * written before the algorithm was recorded (manifest format 1: sha256, in `sha256`-named fields)
 * still restore, verify, and serve as the parent of a BLAKE3 incremental. Such a chain mixes both
 * algorithms, and every manifest is checked with its own.
 */
import {execFileSync} from 'node:child_process'
import {cp, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {runBackup} from '../../src/lib/backup/backup.js'
import {generateData} from '../../src/lib/engine/generate.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import type {Compression} from '../../src/lib/repo/compression.js'
import {selfChecksum, upgradeManifest} from '../../src/lib/repo/manifest.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {verifyBackup} from '../../src/lib/restore/verify.js'
import type {Reporter} from '../../src/lib/ui/reporter.js'
import {runCli} from '../support/cli.js'
import {fileContents, scratchDirs} from '../support/files.js'
import {blake3, type Json, repoRoot} from '../support/fixtures.js'

const SEC = 1_000_000_000n
const HOUR = 3600n * SEC
const T0 = 1_795_000_000n * SEC
const ZSTD: Compression = {codec: 'zstd', level: 3}
const SPACES = ['alpha', 'beta']

const tmp = scratchDirs('engram-hash')

const quiet = (): Reporter => ({warnings: [], info: () => {}, warn: () => {}, progress: () => {}}) as unknown as Reporter

/** The sha256sum binary's digest of a file. */
const sha256sum = (path: string) => execFileSync('sha256sum', [path]).toString().split(' ')[0]


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

/** A data dir and a repository holding one sha256 full backup of it (format 2 as written). */
async function sha256FullBackup(prefix: string, episodes: number, seed: number) {
  const root = await tmp(prefix)
  const data = join(root, 'data')
  await generateData({root: data, spaces: SPACES, episodes, seed, startNs: T0, windowNs: HOUR, fsync: false})
  const repoDir = join(root, 'repo')
  const repo = await Repository.init(new FsBackend(repoDir), ZSTD)
  const full = await runBackup({repo, dataDir: data, type: 'full', spaces: [], compression: ZSTD, hashAlgorithm: 'sha256', lockWaitMs: 5000, reporter: quiet()})
  return {root, data, repoDir, full, manifestPath: join(repoDir, 'backups', full.id, 'manifest.json')}
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
    const source = await fileContents(data)
    for (const sp of m.spaces) {
      expect(sp.archive.hash).toBe(sha256sum(join(repoDir, ...sp.archive.key.split('/'))))
      for (const f of sp.files) {
        // Whole files were captured (nothing was being written), so the file's sha256sum is the capture's.
        expect([f.offset, f.length]).toEqual([0, source.get(`${sp.space}/wal/${f.name}`)!.length])
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
    expect(await fileContents(to)).toEqual(source)

    // Without --hash an incremental keeps its chain's algorithm; a new full backup takes the default.
    await generateData({root: data, spaces: SPACES, episodes: 10, seed: 4, startNs: T0 + 2n * HOUR, windowNs: HOUR, append: true, fsync: false})
    const algorithmOf = async (args: string[]) => {
      const run = await runCli([...args, '--data-dir', data, '--repo', repoDir, '--json'])
      expect(run.code, run.stderr).toBe(0)
      return JSON.parse(await readFile(join(repoDir, 'backups', JSON.parse(run.stdout).id, 'manifest.json'), 'utf8')).hashAlgorithm
    }
    expect(await algorithmOf(['backup', 'incremental'])).toBe('sha256')
    expect(await algorithmOf(['backup', 'full'])).toBe('blake3')
  })

  it('a format-1 repository restores and verifies; a BLAKE3 incremental on it stores only new bytes; the mixed chain restores byte for byte; damage is found with sha256 in the old objects', async () => {
    const {root, data, repoDir, full, manifestPath} = await sha256FullBackup('v1', 150, 11)
    await writeFile(manifestPath, `${JSON.stringify(toFormat1(JSON.parse(await readFile(manifestPath, 'utf8'))), null, 2)}\n`)

    const repo = await Repository.open(new FsBackend(repoDir))
    const old = await repo.manifest(full.id)
    expect([old.format, old.hashAlgorithm]).toEqual(['engram-ops-backup/1', 'sha256'])
    const l4 = await verifyBackup(repo, full.id, 4, quiet())
    expect(l4.findings).toEqual([])
    expect(l4.ok).toBe(true)
    expect(l4.checked.samples).toBeGreaterThan(0)

    // Appended records, then an incremental with the default hash on the format-1 parent.
    const before = await fileContents(data)
    await generateData({root: data, spaces: SPACES, episodes: 40, seed: 12, startNs: T0 + 2n * HOUR, windowNs: HOUR, append: true, fsync: false})
    const after = await fileContents(data)
    const incr = await runBackup({repo, dataDir: data, type: 'incremental', spaces: [], compression: ZSTD, hashAlgorithm: 'blake3', lockWaitMs: 5000, reporter: quiet()})
    expect([incr.type, incr.parent]).toEqual(['incremental', full.id])
    const m = await repo.manifest(incr.id)
    expect([m.format, m.hashAlgorithm]).toEqual(['engram-ops-backup/2', 'blake3'])
    for (const sp of m.spaces) {
      // The parent's files were recognised through their sha256 head and tail: nothing rewritten,
      // and only the appended bytes captured, with their BLAKE3.
      expect(sp.rewritten).toEqual([])
      expect(sp.files.length).toBe(1)
      const f = sp.files[0]
      const key = `${sp.space}/wal/${f.name}`
      expect([f.offset, f.end]).toEqual([before.get(key)!.length, after.get(key)!.length])
      expect(f.hash).toBe(blake3(after.get(key)!.subarray(f.offset)))
    }

    const to = join(root, 'restored')
    const r = await runCli(['restore', incr.id, '--repo', repoDir, '--to', to])
    expect(r.code, r.stderr).toBe(0)
    expect(await fileContents(to)).toEqual(after)
    // Level 4 checks samples of both manifests, each with its algorithm.
    const mixed = await verifyBackup(repo, incr.id, 4, quiet())
    expect(mixed.findings).toEqual([])
    expect(mixed.checked.samples).toBeGreaterThan(l4.checked.samples)

    // A flipped byte in the format-1 object is found at level 2, by its sha256.
    const objectPath = join(repoDir, ...old.spaces[0].archive!.key.split('/'))
    const bytes = await readFile(objectPath)
    bytes[bytes.length >> 1] ^= 0x01
    await writeFile(objectPath, bytes)
    const l2 = await verifyBackup(repo, incr.id, 2, quiet())
    expect(l2.findings).toEqual([{backup: incr.id, level: 2, object: old.spaces[0].archive!.key, problem: expect.stringMatching(/^sha256 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}$/)}])
  })

  it('a manifest from a newer version is refused as such (not as damage); a format-1 manifest missing a hash is damage; upgrading is idempotent', async () => {
    const {repoDir, full, manifestPath} = await sha256FullBackup('formats', 20, 5)
    const stored = JSON.parse(await readFile(manifestPath, 'utf8'))
    const reseal = (m: Json) => ({...m, checksum: selfChecksum(m)})
    const read = async (m: Json) => {
      await writeFile(manifestPath, JSON.stringify(m))
      return (await Repository.open(new FsBackend(repoDir))).manifest(full.id)
    }
    for (const newer of [reseal({...stored, format: 'engram-ops-backup/3'}), reseal({...stored, hashAlgorithm: 'blake7'})]) {
      await expect(read(newer)).rejects.toMatchObject({code: 'MANIFEST_UNSUPPORTED', exitCode: 10, message: expect.stringContaining(`backup ${full.id} was written by a newer engram-ops`)})
    }
    const v1 = toFormat1(stored)
    const upgraded = await read(v1)
    expect(upgradeManifest(upgraded)).toEqual(upgraded)
    expect(upgraded.spaces.map((s) => s.archive!.hash)).toEqual(stored.spaces.map((s: Json) => s.archive.hash))
    const broken = structuredClone(v1)
    delete broken.spaces[1].files[0].tailSha256
    await expect(read(reseal(broken))).rejects.toMatchObject({code: 'MANIFEST_CORRUPT', message: `manifest of backup ${full.id} (format 1) has no tailSha256 for ${broken.spaces[1].files[0].entry}`})
  })
})

describe('a repository written by engram-ops before format 2 (vendored, test/fixtures/format1-repo)', {timeout: 120_000}, () => {
  it('lists, restores byte for byte (sha256sum of the source), and verifies at level 4', async () => {
    const root = await tmp('vendored')
    const repoDir = join(root, 'repo')
    await cp(join(repoRoot, 'test', 'fixtures', 'format1-repo', 'repo'), repoDir, {recursive: true})
    const expected = (await readFile(join(repoRoot, 'test', 'fixtures', 'format1-repo', 'source.sha256'), 'utf8')).trim().split('\n')

    const list = await runCli(['backup', 'list', '--repo', repoDir, '--json'])
    expect(list.code, list.stderr).toBe(0)
    const listed = JSON.parse(list.stdout)
    expect(listed.backups.map((b: Json) => [b.type, b.records, b.label])).toEqual([['full', 36, 'format-1'], ['incremental', 10, null]])
    expect(listed.incomplete).toEqual([])

    const to = join(root, 'restored')
    const r = await runCli(['restore', '--latest', '--repo', repoDir, '--to', to])
    expect(r.code, r.stderr).toBe(0)
    const restored = expected.map((line) => `${sha256sum(join(to, line.split(/\s+/)[1]))}  ${line.split(/\s+/)[1]}`)
    expect(restored).toEqual(expected)

    const repo = await Repository.open(new FsBackend(repoDir))
    const latest = await repo.manifest(listed.backups[1].id)
    expect([latest.format, latest.hashAlgorithm, latest.chain.length]).toEqual(['engram-ops-backup/1', 'sha256', 2])
    const v = await verifyBackup(repo, latest.id, 4, quiet())
    expect(v.findings).toEqual([])
    expect(v.checked.samples).toBeGreaterThan(0)
  })
})
