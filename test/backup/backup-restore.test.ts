/**
 * Backup and restore through the library (runBackup / runRestore / verifyBackup) over a Repository on
 * an FsBackend, against data written by the engine's generator and writer. Archives are read back with
 * the real `zstd` and `tar` binaries, never with the code under test.
 */
import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {cp, lstat, mkdir, open, readdir, readFile, rename, rm, stat, symlink, unlink, writeFile} from 'node:fs/promises'
import {join, relative} from 'node:path'
import {createInterface} from 'node:readline'
import type {Readable} from 'node:stream'

import {afterEach, beforeAll, describe, expect, it, vi} from 'vitest'

import {AdminClient} from '../../src/lib/admin/client.js'
import {type BackupOptions, type BackupResult, runBackup} from '../../src/lib/backup/backup.js'
import {generateData, makeEpisode, Prng} from '../../src/lib/engine/generate.js'
import {listWalFiles, walFileName} from '../../src/lib/engine/layout.js'
import {encodeEpisode} from '../../src/lib/engine/payload.js'
import {WalFileReader} from '../../src/lib/engine/reader.js'
import {encodeRecord, EntryType} from '../../src/lib/engine/record.js'
import {EngineStore} from '../../src/lib/engine/store.js'
import {WORKER_HASH_BYTES} from '../../src/lib/hash-worker.js'
import type {ObjectInfo, ObjectWriter, PutOptions} from '../../src/lib/repo/backend.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import type {Compression} from '../../src/lib/repo/compression.js'
import type {FileCapture, Manifest} from '../../src/lib/repo/manifest.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {type RestoreOptions, type RestoreResult, runPitr, runRestore} from '../../src/lib/restore/restore.js'
import {verifyBackup} from '../../src/lib/restore/verify.js'
import type {Reporter} from '../../src/lib/ui/reporter.js'
import {blake3, repoRoot, sha256} from '../support/fixtures.js'
import {runCli} from '../support/cli.js'
import {scratchDirs} from '../support/files.js'

const BIN = join(repoRoot, 'bin', 'run.js')
const SEC = 1_000_000_000n
const HOUR = 3600n * SEC
const T0 = 1_795_000_000n * SEC
const ZSTD: Compression = {codec: 'zstd', level: 3}

// ------------------------------------------------------------------ helpers

const tmp = scratchDirs('engram-backup')

interface Recording extends Reporter {
  infos: string[]
}
function recorder(): Recording {
  const r: Recording = {
    infos: [],
    warnings: [],
    info: (m) => void r.infos.push(m),
    warn: (m) => void r.warnings.push(m),
    progress: () => {},
  }
  return r
}

async function newRepo(dir: string, compression: Compression = ZSTD): Promise<Repository> {
  return Repository.init(new FsBackend(dir), compression)
}

async function backup(
  repo: Repository,
  dataDir: string,
  type: 'full' | 'incremental',
  o: Partial<BackupOptions> = {},
): Promise<{result: BackupResult; manifest: Manifest; reporter: Recording}> {
  const reporter = recorder()
  const result = await runBackup({repo, dataDir, type, spaces: [], compression: repo.config.compression, lockWaitMs: 5000, reporter, ...o})
  return {result, manifest: await repo.manifest(result.id), reporter}
}

async function restore(repo: Repository, to: string, o: Partial<RestoreOptions> = {}): Promise<RestoreResult & {reporter: Recording}> {
  const reporter = recorder()
  const r = await runRestore(repo, {latest: o.id === undefined, spaces: [], to, yes: false, dryRun: false, reporter, ...o})
  return {...r, reporter}
}


/** Every path under `root`: directories as "dir", files as "file <mode> <size> <sha256>". */
async function tree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (dir: string) => {
    for (const e of (await readdir(dir, {withFileTypes: true})).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(dir, e.name)
      const rel = relative(root, p)
      if (e.isDirectory()) {
        out[rel] = 'dir'
        await walk(p)
      } else {
        const st = await lstat(p)
        out[rel] = `file ${(st.mode & 0o777).toString(8)} ${st.size} ${sha256(await readFile(p))}`
      }
    }
  }
  await walk(root)
  return out
}

async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size
}

/** The bytes of an archive object as `zstd -dc` (the real binary) gives them. */
function archiveTarBytes(repoDir: string, key: string): Buffer {
  const path = join(repoDir, ...key.split('/'))
  return key.endsWith('.zst') ? execFileSync('zstd', ['-dc', path], {maxBuffer: 1 << 30}) : execFileSync('cat', [path], {maxBuffer: 1 << 30})
}

/** A minimal ustar reader, independent of the code under test. */
function tarEntries(buf: Buffer): Array<{path: string; size: number; mode: number; type: string; data: Buffer}> {
  const out: Array<{path: string; size: number; mode: number; type: string; data: Buffer}> = []
  const str = (b: Buffer) => b.toString('utf8').replace(/\0[\s\S]*$/, '')
  let at = 0
  while (at + 512 <= buf.length) {
    const h = buf.subarray(at, at + 512)
    if (h.every((b) => b === 0)) break
    const name = str(h.subarray(0, 100))
    const prefix = str(h.subarray(345, 500))
    const size = Number.parseInt(str(h.subarray(124, 136)).trim(), 8)
    const mode = Number.parseInt(str(h.subarray(100, 108)).trim(), 8)
    out.push({path: prefix ? `${prefix}/${name}` : name, size, mode, type: String.fromCharCode(h[156]), data: buf.subarray(at + 512, at + 512 + size)})
    at += 512 + Math.ceil(size / 512) * 512
  }
  return out
}

const hex16 = (n: number) => n.toString(16).padStart(16, '0')

function space(m: Manifest, id: string) {
  const sp = m.spaces.find((s) => s.space === id)
  expect(sp, `space ${id} in ${m.id}`).toBeDefined()
  return sp!
}

function pick(f: FileCapture) {
  return {name: f.name, entry: f.entry, offset: f.offset, length: f.length, end: f.end, source: f.source}
}

/** Records (valid or not) of a WAL file, with their raw bytes. */
async function records(path: string): Promise<{records: Array<{offset: number; sequence: bigint; timestampNs: bigint; bytes: Buffer}>; end: string}> {
  const data = await readFile(path)
  const reader = new WalFileReader(path)
  const out: Array<{offset: number; sequence: bigint; timestampNs: bigint; bytes: Buffer}> = []
  for await (const r of reader.records()) out.push({offset: r.offset, sequence: r.header.sequence, timestampNs: r.header.timestampNs, bytes: data.subarray(r.offset, r.offset + r.recordSize)})
  return {records: out, end: reader.end!.kind}
}

function episodeRecords(space: string, n: number, seed: number, startNs: bigint, firstSequence = 0n): Buffer[] {
  const rng = new Prng(seed)
  return Array.from({length: n}, (_, i) => {
    const ts = startNs + BigInt(i) * SEC
    const payload = Buffer.from(encodeEpisode(makeEpisode(rng, `${space}-x${seed}-${i}`, ts)))
    return encodeRecord({sequence: firstSequence + BigInt(i), timestampNs: ts, entryType: EntryType.EpisodeStore, payload})
  })
}

/** Engram's startup compaction (storage format §6.2): every valid record, new sequences, timestamps = now. */
async function compact(walDir: string, oldName: string, newName: string, nowNs: bigint): Promise<void> {
  const old = join(walDir, oldName)
  const out: Buffer[] = []
  let seq = 0n
  for await (const r of new WalFileReader(old).records()) {
    if (r.validity !== 'ok') continue
    out.push(encodeRecord({sequence: seq++, timestampNs: nowNs, entryType: r.header.entryType, payload: Buffer.from(r.payload!)}))
  }
  const tmpPath = join(walDir, `${newName}.tmp`)
  await writeFile(tmpPath, Buffer.concat(out), {mode: 0o600})
  await rename(tmpPath, join(walDir, newName))
  if (newName !== oldName) await rm(old)
}

const cli = runCli

// ------------------------------------------------------------------ tests

describe('incremental backups', {timeout: 180_000}, () => {
  it('store only the new bytes, and the full+incrementals chain restores byte-identical to a full backup taken at the same moment', async () => {
    const root = await tmp('incr')
    const data = join(root, 'data')
    const g1 = await generateData({root: data, spaces: ['alpha', 'beta'], episodes: 150, seed: 7, startNs: T0, windowNs: HOUR, fsync: false})
    const f0 = walFileName(T0 / SEC)
    expect(g1.spaces.map((s) => s.file)).toEqual([f0, f0])
    const size0 = {alpha: await fileSize(join(data, 'alpha/wal', f0)), beta: await fileSize(join(data, 'beta/wal', f0))}

    const repoA = await newRepo(join(root, 'repoA'))
    const full = await backup(repoA, data, 'full')
    expect(full.result.type).toBe('full')
    expect(full.manifest.spaces.map((s) => [s.space, s.files.map(pick)])).toEqual([
      ['alpha', [{name: f0, entry: `alpha/wal/${f0}`, offset: 0, length: size0.alpha, end: size0.alpha, source: 'path'}]],
      ['beta', [{name: f0, entry: `beta/wal/${f0}`, offset: 0, length: size0.beta, end: size0.beta, source: 'path'}]],
    ])
    expect(full.manifest.totals).toMatchObject({files: 2, bytes: size0.alpha + size0.beta, records: 300, unlinkedFiles: 0})

    // 1. Append to alpha only: beta is an unchanged space and must produce no archive and no entry.
    const g2 = await generateData({root: data, spaces: ['alpha'], episodes: 40, seed: 8, startNs: T0 + 2n * HOUR, windowNs: HOUR, append: true, fsync: false})
    const a1 = g2.spaces[0].bytes
    expect(g2.spaces[0].file).toBe(f0)
    const inc1 = await backup(repoA, data, 'incremental')
    expect(inc1.result).toMatchObject({type: 'incremental', requestedType: 'incremental', parent: full.result.id, note: null, compaction: null})
    expect(inc1.manifest.chain).toEqual([full.result.id, inc1.result.id])
    expect(space(inc1.manifest, 'alpha').files.map(pick)).toEqual([
      {name: f0, entry: `alpha/wal/${f0}.from-${hex16(size0.alpha)}`, offset: size0.alpha, length: a1, end: size0.alpha + a1, source: 'path'},
    ])
    expect(space(inc1.manifest, 'alpha').files[0]).toMatchObject({records: 40, episodes: 40, firstSequence: '150', lastSequence: '189'})
    expect(space(inc1.manifest, 'beta')).toMatchObject({archive: null, files: [], gone: [], rewritten: []})
    expect(inc1.manifest.totals).toMatchObject({files: 1, bytes: a1, records: 40})
    expect(inc1.result.spaces).toEqual([
      {space: 'alpha', files: 1, bytes: a1, archiveBytes: space(inc1.manifest, 'alpha').archive!.size, records: 40, gone: 0, rewritten: 0},
      {space: 'beta', files: 0, bytes: 0, archiveBytes: 0, records: 0, gone: 0, rewritten: 0},
    ])
    // The archive holds exactly the appended bytes.
    const inc1Tar = tarEntries(archiveTarBytes(join(root, 'repoA'), space(inc1.manifest, 'alpha').archive!.key))
    expect(inc1Tar.map((e) => [e.path, e.size])).toEqual([[`alpha/wal/${f0}.from-${hex16(size0.alpha)}`, a1]])
    expect(inc1Tar[0].data).toEqual((await readFile(join(data, 'alpha/wal', f0))).subarray(size0.alpha))
    expect(existsSync(join(root, 'repoA', 'backups', inc1.result.id, 'beta.tar.zst'))).toBe(false)

    // 2. Append to both spaces, and a new WAL file (a new writer, later creation time) in beta.
    const g3 = await generateData({root: data, spaces: ['alpha', 'beta'], episodes: 30, seed: 9, startNs: T0 + 3n * HOUR, windowNs: HOUR, append: true, fsync: false})
    const [a3, b3] = g3.spaces.map((s) => s.bytes)
    const g4 = await generateData({root: data, spaces: ['beta'], episodes: 20, seed: 10, startNs: T0 + 4n * HOUR, windowNs: HOUR, fsync: false})
    const f1 = walFileName((T0 + 4n * HOUR) / SEC)
    expect(g4.spaces[0]).toMatchObject({file: f1, firstSequence: '0'})
    const f1size = await fileSize(join(data, 'beta/wal', f1))
    expect(f1size).toBe(g4.spaces[0].bytes)
    const inc2 = await backup(repoA, data, 'incremental')
    expect(inc2.result.parent).toBe(inc1.result.id)
    expect(inc2.manifest.chain).toEqual([full.result.id, inc1.result.id, inc2.result.id])
    expect(space(inc2.manifest, 'alpha').files.map(pick)).toEqual([
      {name: f0, entry: `alpha/wal/${f0}.from-${hex16(size0.alpha + a1)}`, offset: size0.alpha + a1, length: a3, end: size0.alpha + a1 + a3, source: 'path'},
    ])
    expect(space(inc2.manifest, 'beta').files.map(pick)).toEqual([
      {name: f0, entry: `beta/wal/${f0}.from-${hex16(size0.beta)}`, offset: size0.beta, length: b3, end: size0.beta + b3, source: 'path'},
      {name: f1, entry: `beta/wal/${f1}`, offset: 0, length: f1size, end: f1size, source: 'path'},
    ])
    expect(space(inc2.manifest, 'beta')).toMatchObject({gone: [], rewritten: []})
    expect(inc2.manifest.compaction).toBeNull()
    expect(inc2.manifest.totals).toMatchObject({files: 3, bytes: a3 + b3 + f1size, records: 30 + 30 + 20})
    for (const sp of ['alpha', 'beta']) {
      const s = space(inc2.manifest, sp)
      const entries = tarEntries(archiveTarBytes(join(root, 'repoA'), s.archive!.key))
      expect(entries.map((e) => [e.path, e.size])).toEqual(s.files.map((f) => [f.entry, f.length]))
      for (const [i, e] of entries.entries()) expect(blake3(e.data)).toBe(s.files[i].hash)
    }

    // 3. Append to beta's new file only: alpha (a space) and beta's old file (a file) are unchanged.
    const g5 = await generateData({root: data, spaces: ['beta'], episodes: 10, seed: 11, startNs: T0 + 5n * HOUR, windowNs: HOUR, append: true, fsync: false})
    expect(g5.spaces[0]).toMatchObject({file: f1, firstSequence: '20'})
    const inc3 = await backup(repoA, data, 'incremental')
    expect(space(inc3.manifest, 'alpha')).toMatchObject({archive: null, files: [], gone: []})
    expect(space(inc3.manifest, 'beta').files.map(pick)).toEqual([
      {name: f1, entry: `beta/wal/${f1}.from-${hex16(f1size)}`, offset: f1size, length: g5.spaces[0].bytes, end: f1size + g5.spaces[0].bytes, source: 'path'},
    ])
    expect(tarEntries(archiveTarBytes(join(root, 'repoA'), space(inc3.manifest, 'beta').archive!.key)).map((e) => e.path)).toEqual([`beta/wal/${f1}.from-${hex16(f1size)}`])

    // A full backup at the same moment, into a second repository.
    const repoB = await newRepo(join(root, 'repoB'))
    const fullB = await backup(repoB, data, 'full')
    expect(fullB.manifest.spaces.map((s) => [s.space, s.files.map((f) => [f.name, f.offset, f.end])])).toEqual([
      ['alpha', [[f0, 0, size0.alpha + a1 + a3]]],
      ['beta', [[f0, 0, size0.beta + b3], [f1, 0, f1size + g5.spaces[0].bytes]]],
    ])
    // Incrementals stored only what was new: together they captured exactly the bytes of the full.
    const captured = [full, inc1, inc2, inc3].reduce((a, b) => a + b.manifest.totals.bytes, 0)
    expect(captured).toBe(fullB.manifest.totals.bytes)

    const viaChain = join(root, 'restored-chain')
    const viaFull = join(root, 'restored-full')
    const r1 = await restore(repoA, viaChain)
    expect(r1.chain.map((c) => [c.id, c.type])).toEqual([
      [full.result.id, 'full'],
      [inc1.result.id, 'incremental'],
      [inc2.result.id, 'incremental'],
      [inc3.result.id, 'incremental'],
    ])
    expect(r1.restoredBytes).toBe(captured)
    await restore(repoB, viaFull)
    const expected = await tree(data)
    expect(Object.keys(expected)).toEqual([
      'alpha', 'alpha/cold', 'alpha/hot', 'alpha/wal', `alpha/wal/${f0}`, 'alpha/warm',
      'beta', 'beta/cold', 'beta/hot', 'beta/wal', `beta/wal/${f0}`, `beta/wal/${f1}`, 'beta/warm',
    ])
    expect(await tree(viaChain)).toEqual(expected)
    expect(await tree(viaFull)).toEqual(expected)
    // And a restore of an intermediate backup gives the state of that moment.
    const mid = join(root, 'restored-inc1')
    await restore(repoA, mid, {id: inc1.result.id})
    expect(await fileSize(join(mid, 'alpha/wal', f0))).toBe(size0.alpha + a1)
    expect(await fileSize(join(mid, 'beta/wal', f0))).toBe(size0.beta)
    expect(existsSync(join(mid, 'beta/wal', f1))).toBe(false)
  })

  it('a compaction (new file, old one deleted) is recorded as gone + new file whole, flagged, and the chain restores the data dir', async () => {
    const root = await tmp('compact')
    const data = join(root, 'data')
    await generateData({root: data, spaces: ['alpha', 'beta'], episodes: 60, seed: 21, startNs: T0, windowNs: HOUR, fsync: false})
    const f0 = walFileName(T0 / SEC)
    const repo = await newRepo(join(root, 'repo'))
    const full = await backup(repo, data, 'full')

    const compactedAt = T0 + 10n * HOUR
    const fc = walFileName(compactedAt / SEC)
    await compact(join(data, 'alpha/wal'), f0, fc, compactedAt)
    const fcSize = await fileSize(join(data, 'alpha/wal', fc))
    const inc = await backup(repo, data, 'incremental')
    expect(inc.result.type).toBe('incremental')
    const alpha = space(inc.manifest, 'alpha')
    expect(alpha.gone).toEqual([f0])
    expect(alpha.rewritten).toEqual([])
    expect(alpha.files.map(pick)).toEqual([{name: fc, entry: `alpha/wal/${fc}`, offset: 0, length: fcSize, end: fcSize, source: 'path'}])
    expect(alpha.files[0]).toMatchObject({records: 60, firstSequence: '0', lastSequence: '59', firstTimestampNs: String(compactedAt), lastTimestampNs: String(compactedAt)})
    expect(space(inc.manifest, 'beta')).toMatchObject({archive: null, files: [], gone: [], rewritten: []})
    expect(inc.manifest.compaction).toEqual({detected: true, spaces: ['alpha'], rewriteTimeNs: String(compactedAt)})
    expect(inc.result.compaction).toEqual(inc.manifest.compaction)
    expect(inc.result.spaces.find((s) => s.space === 'alpha')).toMatchObject({gone: 1, rewritten: 0, files: 1, bytes: fcSize})
    expect(inc.reporter.warnings).toContain(`space alpha: 1 WAL files gone and 0 rewritten since ${full.result.id}: Engram restarted and compacted; captured the new files whole`)

    const restored = join(root, 'restored')
    await restore(repo, restored)
    expect(await tree(restored)).toEqual(await tree(data))
    expect(existsSync(join(restored, 'alpha/wal', f0))).toBe(false)

    // After the compaction, the new file continues incrementally.
    const g = await generateData({root: data, spaces: ['alpha'], episodes: 5, seed: 22, startNs: compactedAt + HOUR, windowNs: HOUR, append: true, fsync: false})
    expect(g.spaces[0].file).toBe(fc)
    const inc2 = await backup(repo, data, 'incremental')
    expect(inc2.manifest.compaction).toBeNull()
    expect(space(inc2.manifest, 'alpha').files.map(pick)).toEqual([
      {name: fc, entry: `alpha/wal/${fc}.from-${hex16(fcSize)}`, offset: fcSize, length: g.spaces[0].bytes, end: fcSize + g.spaces[0].bytes, source: 'path'},
    ])
    const restored2 = join(root, 'restored2')
    await restore(repo, restored2)
    expect(await tree(restored2)).toEqual(await tree(data))
    expect((await verifyBackup(repo, inc2.result.id, 3, recorder())).findings).toEqual([])
  })

  it('a compaction renamed over the same file name (same second) is recorded as rewritten and captured whole', async () => {
    const root = await tmp('rewrite')
    const data = join(root, 'data')
    await generateData({root: data, spaces: ['alpha'], episodes: 40, seed: 31, startNs: T0, windowNs: HOUR, fsync: false})
    const f0 = walFileName(T0 / SEC)
    const repo = await newRepo(join(root, 'repo'))
    const full = await backup(repo, data, 'full')
    const before = await fileSize(join(data, 'alpha/wal', f0))
    const compactedAt = T0 + 10n * HOUR
    await compact(join(data, 'alpha/wal'), f0, f0, compactedAt)
    // Same records, same sizes: only the bytes (timestamps) tell the rewrite apart.
    expect(await fileSize(join(data, 'alpha/wal', f0))).toBe(before)
    const inc = await backup(repo, data, 'incremental')
    const alpha = space(inc.manifest, 'alpha')
    expect(alpha).toMatchObject({gone: [], rewritten: [f0]})
    expect(alpha.files.map(pick)).toEqual([{name: f0, entry: `alpha/wal/${f0}`, offset: 0, length: before, end: before, source: 'path'}])
    expect(inc.manifest.compaction).toEqual({detected: true, spaces: ['alpha'], rewriteTimeNs: String(compactedAt)})
    expect(inc.reporter.warnings).toContain(`space alpha: 0 WAL files gone and 1 rewritten since ${full.result.id}: Engram restarted and compacted; captured the new files whole`)
    const restored = join(root, 'restored')
    await restore(repo, restored)
    expect(await tree(restored)).toEqual(await tree(data))
  })

  it('backup incremental on an empty repository takes a full backup and says so (lib and CLI)', async () => {
    const root = await tmp('empty')
    const data = join(root, 'data')
    await generateData({root: data, spaces: ['alpha'], episodes: 10, seed: 41, startNs: T0, windowNs: HOUR, fsync: false})
    const repo = await newRepo(join(root, 'repo'))
    const note = 'no backup in the repository yet: took a full backup instead'
    const {result, manifest, reporter} = await backup(repo, data, 'incremental')
    expect(result).toMatchObject({type: 'full', requestedType: 'incremental', parent: null, note})
    expect(result.id).toMatch(/^\d{8}T\d{6}Z-full-[0-9a-f]{6}$/)
    expect(manifest).toMatchObject({type: 'full', parent: null, chain: [result.id], notes: [note]})
    expect(reporter.warnings).toContain(note)

    await newRepo(join(root, 'repo-cli'))
    const text = await cli(['backup', 'incremental', '--data-dir', data, '--repo', join(root, 'repo-cli')])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/^backup \d{8}T\d{6}Z-full-[0-9a-f]{6} \(full\) complete: 1 files, /m)
    expect(text.stdout).toContain(`note: ${note}\n`)
    expect(text.stderr).toContain(`warning: ${note}`)
    await newRepo(join(root, 'repo-json'))
    const json = await cli(['backup', 'incremental', '--data-dir', data, '--repo', join(root, 'repo-json'), '--json'])
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toMatchObject({type: 'full', requestedType: 'incremental', parent: null, note})
  })
})

// Unlinked files are found through /proc/<pid>/fd: Linux only.
describe.skipIf(process.platform !== 'linux')('unlinked WAL capture', {timeout: 180_000}, () => {
  const children: ChildProcess[] = []
  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL')
        await new Promise((r) => c.once('exit', r))
      }
    }
  })

  /** A process that appends to `path` like Engram's live writer and keeps it open. */
  async function holdOpen(path: string, batches: Buffer[]): Promise<{child: ChildProcess; next: () => Promise<void>}> {
    const script = `
      const fs = require('node:fs')
      const batches = JSON.parse(process.env.BATCHES).map((b) => Buffer.from(b, 'base64'))
      const fd = fs.openSync(process.env.WAL_PATH, 'a', 0o600)
      let i = 0
      const write = () => { fs.writeSync(fd, batches[i++]); fs.fsyncSync(fd); process.stdout.write('written ' + i + '\\n') }
      write()
      require('node:readline').createInterface({input: process.stdin}).on('line', () => write())
    `
    const child = spawn(process.execPath, ['-e', script], {
      env: {...process.env, WAL_PATH: path, BATCHES: JSON.stringify(batches.map((b) => b.toString('base64')))},
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    children.push(child)
    const lines = createInterface({input: child.stdout!})
    const nextLine = () => new Promise<string>((resolve, reject) => {
      lines.once('line', resolve)
      child.once('exit', (code) => reject(new Error(`writer exited with ${code}`)))
    })
    expect(await nextLine()).toBe('written 1')
    let n = 1
    return {
      child,
      next: async () => {
        child.stdin!.write('more\n')
        expect(await nextLine()).toBe(`written ${++n}`)
      },
    }
  }

  it('captures a WAL file that was unlinked while a process still appends to it, reports it, and restores its bytes', async () => {
    const root = await tmp('unlinked')
    const data = join(root, 'data')
    await generateData({root: data, spaces: ['alpha', 'beta'], episodes: 20, seed: 51, startNs: T0, windowNs: HOUR, fsync: false})
    const liveName = walFileName(T0 / SEC + 7200n)
    const livePath = join(data, 'alpha/wal', liveName)
    const batch1 = Buffer.concat(episodeRecords('alpha', 4, 52, T0 + 2n * HOUR))
    const batch2 = Buffer.concat(episodeRecords('alpha', 3, 53, T0 + 3n * HOUR, 4n))
    const {child, next} = await holdOpen(livePath, [batch1, batch2])
    // Engram's compaction deletes the file; the writer keeps appending to the unlinked inode.
    await unlink(livePath)
    await next()
    expect(existsSync(livePath)).toBe(false)

    const repo = await newRepo(join(root, 'repo'))
    const {result, manifest, reporter} = await backup(repo, data, 'full')
    const alpha = space(manifest, 'alpha')
    const live = alpha.files.find((f) => f.name === liveName)
    expect(live).toMatchObject({name: liveName, entry: `alpha/wal/${liveName}`, source: 'unlinked', pid: child.pid, offset: 0, length: batch1.length + batch2.length, records: 7, firstSequence: '0', lastSequence: '6'})
    expect(live!.hash).toBe(blake3(Buffer.concat([batch1, batch2])))
    expect(alpha.files.map((f) => [f.name, f.source])).toEqual([
      [walFileName(T0 / SEC), 'path'],
      [liveName, 'unlinked'],
    ])
    expect(space(manifest, 'beta').files.map((f) => f.source)).toEqual(['path'])
    expect(manifest.totals.unlinkedFiles).toBe(1)
    expect(result.unlinked).toEqual([{space: 'alpha', name: liveName, pid: child.pid}])
    expect(reporter.warnings).toContain(`captured alpha/wal/${liveName} from an unlinked file still open in pid ${child.pid}`)

    const restored = join(root, 'restored')
    await restore(repo, restored)
    expect(await readFile(join(restored, 'alpha/wal', liveName))).toEqual(Buffer.concat([batch1, batch2]))
    expect((await stat(join(restored, 'alpha/wal', liveName))).mode & 0o777).toBe(0o600)
    expect(await readFile(join(restored, 'alpha/wal', walFileName(T0 / SEC)))).toEqual(await readFile(join(data, 'alpha/wal', walFileName(T0 / SEC))))

    // The CLI says so too.
    await newRepo(join(root, 'repo-cli'))
    const out = await cli(['backup', 'full', '--data-dir', data, '--repo', join(root, 'repo-cli')])
    expect(out.code).toBe(0)
    expect(out.stdout).toContain(`captured unlinked WAL alpha/wal/${liveName} from pid ${child.pid}\n`)
    expect(out.stdout).toMatch(/complete: 3 files, /)
    const json = await cli(['backup', 'full', '--data-dir', data, '--repo', join(root, 'repo-cli'), '--json'])
    expect(JSON.parse(json.stdout)).toMatchObject({unlinked: [{space: 'alpha', name: liveName, pid: child.pid}], totals: {unlinkedFiles: 1}})
  })

  it('an unlinked file whose name was reused by its replacement is captured under the next free name; both restore', async () => {
    const root = await tmp('unlinked-same')
    const data = join(root, 'data')
    await generateData({root: data, spaces: ['alpha'], episodes: 5, seed: 61, startNs: T0, windowNs: HOUR, fsync: false})
    const secs = T0 / SEC + 7200n
    const liveName = walFileName(secs)
    const livePath = join(data, 'alpha/wal', liveName)
    const batch1 = Buffer.concat(episodeRecords('alpha', 3, 62, T0 + 2n * HOUR))
    const {child} = await holdOpen(livePath, [batch1])
    // Compaction in the same second: its output is renamed over the live writer's file.
    const replacement = Buffer.concat(episodeRecords('alpha', 2, 63, T0 + 9n * HOUR))
    await writeFile(`${livePath}.tmp`, replacement, {mode: 0o600})
    await rename(`${livePath}.tmp`, livePath)

    const repo = await newRepo(join(root, 'repo'))
    const {result, manifest} = await backup(repo, data, 'full')
    const movedName = walFileName(secs + 1n)
    expect(space(manifest, 'alpha').files.map((f) => [f.name, f.source, f.pid ?? null, f.length])).toEqual([
      [walFileName(T0 / SEC), 'path', null, await fileSize(join(data, 'alpha/wal', walFileName(T0 / SEC)))],
      [liveName, 'path', null, replacement.length],
      [movedName, 'unlinked', child.pid, batch1.length],
    ])
    expect(result.unlinked).toEqual([{space: 'alpha', name: movedName, pid: child.pid}])
    const restored = join(root, 'restored')
    await restore(repo, restored)
    expect(await readFile(join(restored, 'alpha/wal', liveName))).toEqual(replacement)
    expect(await readFile(join(restored, 'alpha/wal', movedName))).toEqual(batch1)
  })

  it('finds unlinked files when the data directory is given through a symlink', async () => {
    const root = await tmp('unlinked-link')
    const real = join(root, 'real-data')
    await generateData({root: real, spaces: ['alpha'], episodes: 5, seed: 71, startNs: T0, windowNs: HOUR, fsync: false})
    const link = join(root, 'data-link')
    await symlink(real, link)
    const liveName = walFileName(T0 / SEC + 7200n)
    const batch = Buffer.concat(episodeRecords('alpha', 2, 72, T0 + 2n * HOUR))
    const {child} = await holdOpen(join(link, 'alpha/wal', liveName), [batch])
    await unlink(join(real, 'alpha/wal', liveName))
    const repo = await newRepo(join(root, 'repo'))
    const {result, manifest} = await backup(repo, link, 'full')
    expect(result.unlinked).toEqual([{space: 'alpha', name: liveName, pid: child.pid}])
    expect(space(manifest, 'alpha').files.find((f) => f.name === liveName)).toMatchObject({source: 'unlinked', length: batch.length})
  })
})

describe('hot backup while a server writes', {timeout: 180_000}, () => {
  it('every write acknowledged before a backup started is in it, and every copied WAL ends on a record boundary', async () => {
    const root = await tmp('hot')
    const data = join(root, 'data')
    await generateData({root: data, spaces: ['alpha'], episodes: 30, seed: 81, startNs: T0, windowNs: HOUR, fsync: false})
    const server = spawn(process.execPath, [BIN, 'engine', 'serve', '--data-dir', data, '--port', '0', '--json'], {cwd: repoRoot, env: {...process.env, CI: '1'}, stdio: ['ignore', 'pipe', 'pipe']})
    let serverErr = ''
    server.stderr!.on('data', (d) => (serverErr += d))
    const serverExit = new Promise<number | null>((r) => server.once('exit', (code) => r(code)))
    let stop = false
    let writers: Array<Promise<void>> = []
    try {
      const first = await new Promise<string>((resolve, reject) => {
        createInterface({input: server.stdout!}).once('line', resolve)
        server.once('exit', (code) => reject(new Error(`engine serve exited with ${code}: ${serverErr}`)))
      })
      const {url} = JSON.parse(first) as {url: string}
      const client = new AdminClient({baseUrl: url, space: 'default', timeoutMs: 30_000})
      const acked: string[] = []
      const writer = async (w: number) => {
        for (let n = 0; !stop; n++) {
          const id = `hot-w${w}-${n}`
          const r = await client.remember({id, content: `memory ${id}`, confidence: 0.9})
          expect(r.memory_id).toBe(id)
          acked.push(id)
        }
      }
      writers = Array.from({length: 6}, (_, w) => writer(w))
      const waitForMore = async (n: number) => {
        const target = acked.length + n
        while (acked.length < target) await new Promise((r) => setTimeout(r, 20))
      }

      const repo = await newRepo(join(root, 'repo'))
      const rounds: Array<{id: string; before: string[]; during: number}> = []
      for (const type of ['full', 'incremental', 'full', 'incremental'] as const) {
        await waitForMore(120)
        const before = [...acked]
        const {result} = await backup(repo, data, type)
        expect(result.type).toBe(type)
        rounds.push({id: result.id, before, during: acked.length - before.length})
      }
      stop = true
      await Promise.all(writers)
      await client.close()
      // Writes really went on while backups ran.
      expect(rounds.reduce((a, r) => a + r.during, 0)).toBeGreaterThan(0)
      server.kill('SIGTERM')
      expect(await serverExit).toBe(0)

      const liveFiles = await listWalFiles(join(data, 'default', 'wal'))
      expect(liveFiles.length).toBe(1)
      const liveBytes = await readFile(liveFiles[0].path)
      for (const [i, round] of rounds.entries()) {
        const to = join(root, `restored-${i}`)
        await restore(repo, to, {id: round.id})
        const chain = await repo.chain(round.id)
        for (const sp of ['alpha', 'default']) {
          for (const f of await listWalFiles(join(to, sp, 'wal'))) {
            const {end} = await records(f.path)
            expect(end, `${sp}/${f.name} of ${round.id}`).toBe('eof')
            // The copy is a prefix of the live file, cut where the manifest says.
            const end2 = chain.flatMap((m) => m.spaces.find((s) => s.space === sp)?.files ?? []).filter((c) => c.name === f.name).at(-1)!.end
            expect(f.size).toBe(end2)
            if (sp === 'default') expect(sha256(await readFile(f.path))).toBe(sha256(liveBytes.subarray(0, f.size)))
          }
        }
        const store = await EngineStore.open(to, {createDefault: false})
        try {
          const live = store.get('default')!.live
          const missing = round.before.filter((id) => !live.has(id))
          expect(missing, `acknowledged before ${round.id} but not restored`).toEqual([])
          for (const id of round.before.filter((_, k) => k % 25 === 0)) expect((await store.getEpisode('default', id))?.what).toBe(`memory ${id}`)
          expect(store.get('alpha')!.live.size).toBe(30)
        } finally {
          await store.close()
        }
        const v = await verifyBackup(repo, round.id, 3, recorder())
        expect(v.findings).toEqual([])
        expect(v.ok).toBe(true)
      }
    } finally {
      // On failure too: stop the writers before the server goes, so none is left failing in the background.
      stop = true
      await Promise.allSettled(writers)
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL')
      await serverExit
    }
  })
})

describe('restore safety', {timeout: 180_000}, () => {
  let root: string
  let data: string
  let repoDir: string
  let repo: Repository
  let fullId: string
  let incId: string
  let dataTree: Record<string, string>

  beforeAll(async () => {
    root = await tmp('safety')
    data = join(root, 'data')
    repoDir = join(root, 'repo')
    await generateData({root: data, spaces: ['alpha', 'beta'], episodes: 25, seed: 91, startNs: T0, windowNs: HOUR, fsync: false})
    repo = await newRepo(repoDir)
    fullId = (await backup(repo, data, 'full')).result.id
    await generateData({root: data, spaces: ['alpha', 'beta'], episodes: 5, seed: 92, startNs: T0 + 2n * HOUR, windowNs: HOUR, append: true, fsync: false})
    incId = (await backup(repo, data, 'incremental')).result.id
    dataTree = await tree(data)
  }, 180_000)

  async function occupied(name: string): Promise<string> {
    const target = join(root, name)
    await mkdir(join(target, 'old-space', 'wal'), {recursive: true})
    await writeFile(join(target, 'keep.txt'), 'the previous contents')
    await writeFile(join(target, 'old-space', 'wal', 'wal-0000000000000001.log'), 'old wal')
    return target
  }

  const leftovers = async () => (await readdir(root)).filter((n) => n.includes('engram-ops-restore'))

  it('refuses a non-empty target without --yes (exit 2, names the target) and leaves it untouched', async () => {
    const target = await occupied('busy')
    const before = await tree(target)
    const err = await restore(repo, target).catch((e: unknown) => e)
    expect(err).toMatchObject({exitCode: 2, code: 'TARGET_NOT_EMPTY', subject: target})
    expect((err as Error).message).toBe(`restore target ${target} is not empty`)
    expect(await tree(target)).toEqual(before)
    expect(await leftovers()).toEqual([])

    const out = await cli(['restore', '--latest', '--repo', repoDir, '--to', target, '--json'])
    expect(out.code).toBe(2)
    expect(JSON.parse(out.stdout).error).toMatchObject({code: 'TARGET_NOT_EMPTY', exitCode: 2, subject: target, message: `restore target ${target} is not empty`})
    expect(await tree(target)).toEqual(before)
  })

  it('with --yes moves the old contents aside (and says where) and restores completely; twice in the same second too', async () => {
    const target = await occupied('replace')
    const before = await tree(target)
    const r = await restore(repo, target, {yes: true})
    expect(r.targetState).toBe('not-empty')
    expect(r.replacedMovedTo).toMatch(new RegExp(`^${target.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.replaced-\\d{4}-\\d{2}-\\d{2}T\\d{6}Z`))
    expect(await tree(r.replacedMovedTo!)).toEqual(before)
    expect(r.reporter.warnings).toContain(`the previous contents of ${target} were moved to ${r.replacedMovedTo}; delete it once the restore is checked`)
    expect(await tree(target)).toEqual(dataTree)

    // Two forced restores in the same second must not collide on the moved-aside name.
    vi.useFakeTimers({toFake: ['Date']})
    vi.setSystemTime(new Date('2026-11-28T10:00:00.250Z'))
    let second: RestoreResult
    let third: RestoreResult
    try {
      second = await restore(repo, target, {yes: true})
      third = await restore(repo, target, {yes: true})
    } finally {
      vi.useRealTimers()
    }
    expect(second.replacedMovedTo).toBe(`${target}.replaced-2026-11-28T100000Z`)
    expect(third.replacedMovedTo).toBe(`${target}.replaced-2026-11-28T100000Z-2`)
    expect(await tree(second.replacedMovedTo!)).toEqual(dataTree)
    expect(await tree(third.replacedMovedTo!)).toEqual(dataTree)
    expect(await tree(r.replacedMovedTo!)).toEqual(before)
    expect(await tree(target)).toEqual(dataTree)
    expect(await leftovers()).toEqual([])

    const out = await cli(['restore', '--latest', '--repo', repoDir, '--to', target, '--yes'])
    expect(out.code).toBe(0)
    const moved = /the previous contents of the target are in (\S+)\n/.exec(out.stdout)
    expect(moved).not.toBeNull()
    expect(await tree(moved![1])).toEqual(dataTree)
    expect(await tree(target)).toEqual(dataTree)
    // Under --json stderr is silent: the warning is in the result.
    const asJson = await cli(['restore', '--latest', '--repo', repoDir, '--to', target, '--yes', '--json'])
    expect(asJson.code).toBe(0)
    const result = JSON.parse(asJson.stdout)
    expect(result.warnings).toEqual([`the previous contents of ${target} were moved to ${result.replacedMovedTo}; delete it once the restore is checked`])
    expect(await tree(result.replacedMovedTo)).toEqual(dataTree)
  })

  it('writes WAL files with mode 0600 and creates hot/ warm/ cold/ for every space', async () => {
    const target = join(root, 'modes')
    await restore(repo, target)
    for (const sp of ['alpha', 'beta']) {
      for (const sub of ['wal', 'hot', 'warm', 'cold']) expect((await stat(join(target, sp, sub))).isDirectory()).toBe(true)
      const wal = await listWalFiles(join(target, sp, 'wal'))
      expect(wal.length).toBe(1)
      for (const f of wal) expect((await stat(f.path)).mode & 0o777).toBe(0o600)
    }
    expect(await tree(target)).toEqual(dataTree)
  })

  it('fsyncs every restored file before it reports success; --no-sync restores the same bytes without one', async () => {
    // The FileHandle class is not exported: its prototype is taken from a handle.
    const probe = await open(join(data, 'alpha', 'wal', (await readdir(join(data, 'alpha', 'wal')))[0]), 'r')
    const proto = Object.getPrototypeOf(probe) as {sync: () => Promise<void>; datasync: () => Promise<void>}
    await probe.close()
    const syncs = vi.spyOn(proto, 'sync')
    const datasyncs = vi.spyOn(proto, 'datasync')
    try {
      expect((await restore(repo, join(root, 'synced'))).synced).toBe(true)
      // One fsync per restored file and archive: 2 spaces, each with its file whole and then appended
      // to; then the directories that name them: each space's wal/ and the space, staging, its parent.
      expect(syncs.mock.calls.length).toBe(4 + 6)
      syncs.mockClear()
      datasyncs.mockClear()
      expect((await restore(repo, join(root, 'unsynced'), {sync: false})).synced).toBe(false)
      expect(syncs.mock.calls.length).toBe(0)
      expect(datasyncs.mock.calls.length).toBe(0)
      // PITR also fsyncs the files it cuts, unless told not to.
      const target = {kind: 'time', ns: T0 + HOUR, exclusive: false} as const
      const reporter = recorder()
      await runPitr(repo, {target, spaces: [], to: join(root, 'pitr-synced'), yes: false, dryRun: false, reporter})
      expect(syncs.mock.calls.length).toBe(4 + 6) // the full backup's 2 files (the target is before the incremental), the 2 cut ones, the 6 directories
      syncs.mockClear()
      expect((await runPitr(repo, {target, spaces: [], to: join(root, 'pitr-unsynced'), yes: false, dryRun: false, reporter, sync: false})).synced).toBe(false)
      expect(syncs.mock.calls.length).toBe(0)
      expect(datasyncs.mock.calls.length).toBe(0)
    } finally {
      syncs.mockRestore()
      datasyncs.mockRestore()
    }
    expect(await tree(join(root, 'synced'))).toEqual(dataTree)
    expect(await tree(join(root, 'unsynced'))).toEqual(dataTree)
    expect(await tree(join(root, 'pitr-synced'))).toEqual(await tree(join(root, 'pitr-unsynced')))
    const out = await cli(['restore', '--latest', '--repo', repoDir, '--to', join(root, 'unsynced-cli'), '--no-sync', '--json'])
    expect(out.code).toBe(0)
    expect(JSON.parse(out.stdout)).toMatchObject({synced: false, dryRun: false})
    expect(await tree(join(root, 'unsynced-cli'))).toEqual(dataTree)
    const human = await cli(['restore', '--latest', '--repo', repoDir, '--to', join(root, 'unsynced-cli-2'), '--no-sync'])
    expect(human.stdout).toContain('WAL files are mode 0600; not fsynced (--no-sync)\n')
  })

  it('--dry-run gives the plan (chain, objects, bytes) and writes nothing', async () => {
    const target = join(root, 'dry')
    const before = (await readdir(root)).sort()
    const fullM = await repo.manifest(fullId)
    const incM = await repo.manifest(incId)
    const objects = [fullM, incM].flatMap((m) => m.spaces.map((s) => ({key: s.archive!.key, bytes: s.archive!.size})))
    const r = await restore(repo, target, {dryRun: true})
    expect(r).toMatchObject({
      dryRun: true,
      backup: incId,
      chain: [
        {id: fullId, type: 'full', startedAt: fullM.startedAt},
        {id: incId, type: 'incremental', startedAt: incM.startedAt},
      ],
      spaces: ['alpha', 'beta'],
      objects,
      bytes: objects.reduce((a, o) => a + o.bytes, 0),
      target,
      targetState: 'missing',
      restoredBytes: 0,
      replacedMovedTo: null,
      synced: false,
    })
    expect(objects.map((o) => o.key)).toEqual([
      `backups/${fullId}/alpha.tar.zst`,
      `backups/${fullId}/beta.tar.zst`,
      `backups/${incId}/alpha.tar.zst`,
      `backups/${incId}/beta.tar.zst`,
    ])
    expect((await readdir(root)).sort()).toEqual(before)

    const out = await cli(['restore', '--latest', '--repo', repoDir, '--to', target, '--dry-run'])
    expect(out.code).toBe(0)
    expect(out.stdout).toContain(`plan: restore backup ${incId} (chain ${fullId} full -> ${incId} incremental)\n`)
    expect(out.stdout).toContain(`  spaces alpha, beta into ${target} (target missing)\n`)
    for (const o of objects) expect(out.stdout).toContain(`  ${o.key} `)
    expect(out.stdout).toContain('  4 objects, ')
    expect(out.stdout).not.toContain('written in')
    // A non-empty target may be planned without --yes; it is not touched.
    const busy = await occupied('dry-busy')
    const busyTree = await tree(busy)
    const json = await cli(['restore', '--latest', '--repo', repoDir, '--to', busy, '--dry-run', '--json'])
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toMatchObject({dryRun: true, targetState: 'not-empty', objects, restoredBytes: 0})
    expect(await tree(busy)).toEqual(busyTree)
    expect(existsSync(target)).toBe(false)
    expect(await leftovers()).toEqual([])
  })

  it('--space restores only that space', async () => {
    const target = join(root, 'only-beta')
    const r = await restore(repo, target, {spaces: ['beta']})
    expect(r.spaces).toEqual(['beta'])
    expect(r.objects.map((o) => o.key)).toEqual([`backups/${fullId}/beta.tar.zst`, `backups/${incId}/beta.tar.zst`])
    expect(await readdir(target)).toEqual(['beta'])
    const betaOnly = Object.fromEntries(Object.entries(dataTree).filter(([k]) => k === 'beta' || k.startsWith('beta/')))
    expect(await tree(target)).toEqual(betaOnly)
    const err = await restore(repo, join(root, 'nope'), {spaces: ['gamma']}).catch((e: unknown) => e)
    expect(err).toMatchObject({exitCode: 2, code: 'SPACE_NOT_IN_BACKUP'})
    expect(existsSync(join(root, 'nope'))).toBe(false)
  })

  it('a restore that fails verification (damaged archive) leaves a --yes target exactly as it was (exit 15)', async () => {
    const damagedDir = join(root, 'repo-damaged')
    await cp(repoDir, damagedDir, {recursive: true})
    const key = (await repo.manifest(incId)).spaces.find((s) => s.space === 'beta')!.archive!.key
    const path = join(damagedDir, ...key.split('/'))
    const fh = await open(path, 'r+')
    const size = (await fh.stat()).size
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, Math.floor(size / 2))
    b[0] ^= 0xff
    await fh.write(b, 0, 1, Math.floor(size / 2))
    await fh.close()
    const target = await occupied('damaged-target')
    const before = await tree(target)
    const damaged = await Repository.open(new FsBackend(damagedDir))
    const err = await restore(damaged, target, {yes: true}).catch((e: unknown) => e)
    expect(err).toMatchObject({exitCode: 15})
    expect(await tree(target)).toEqual(before)
    expect(await leftovers()).toEqual([])
    expect((await readdir(root)).filter((n) => n.startsWith('damaged-target.replaced-'))).toEqual([])
    // The CLI fails the same way (exit 15, not a crash on a rejected frame) and cleans up.
    const out = await cli(['restore', '--latest', '--repo', damagedDir, '--to', target, '--yes', '--json'])
    expect(out.code).toBe(15)
    expect(JSON.parse(out.stdout).error).toMatchObject({exitCode: 15, subject: key})
    expect(await tree(target)).toEqual(before)
    expect(await leftovers()).toEqual([])
  })
})

describe('restore of a sha256 chain large enough to hash in a worker thread', {timeout: 180_000}, () => {
  it('is byte-identical; a flipped byte in an archive fails it (exit 15) and leaves the target as it was', async () => {
    const root = await tmp('hashworker')
    const data = join(root, 'data')
    const repoDir = join(root, 'repo')
    // ~3.3 KiB per episode: about 20 MiB of WAL, so object and file bytes together pass WORKER_HASH_BYTES.
    await generateData({root: data, spaces: ['alpha', 'beta'], episodes: 3000, seed: 41, startNs: T0, windowNs: HOUR, fsync: false})
    const repo = await newRepo(repoDir, {codec: 'zstd', level: 1})
    // sha256 goes to the worker (BLAKE3 is hashed inline); the incremental keeps its parent's algorithm.
    await backup(repo, data, 'full', {hashAlgorithm: 'sha256'})
    await generateData({root: data, spaces: ['alpha'], episodes: 300, seed: 42, startNs: T0 + 2n * HOUR, windowNs: HOUR, append: true, fsync: false})
    const inc = await backup(repo, data, 'incremental')
    const chain = await repo.chain(inc.result.id)
    expect(chain.map((m) => m.hashAlgorithm)).toEqual(['sha256', 'sha256'])
    const hashed = chain.flatMap((m) => m.spaces).reduce((a, s) => a + (s.archive ? s.archive.size + s.archive.uncompressedSize : 0), 0)
    expect(hashed).toBeGreaterThanOrEqual(WORKER_HASH_BYTES)
    const to = join(root, 'restored')
    await restore(repo, to)
    expect(await tree(to)).toEqual(await tree(data))

    const key = chain[0].spaces.find((s) => s.space === 'beta')!.archive!.key
    const fh = await open(join(repoDir, ...key.split('/')), 'r+')
    const b = Buffer.alloc(1)
    const at = Math.floor((await fh.stat()).size * 0.7)
    await fh.read(b, 0, 1, at)
    b[0] ^= 0x01
    await fh.write(b, 0, 1, at)
    await fh.close()
    const target = join(root, 'damaged-target')
    const err = await restore(repo, target).catch((e: unknown) => e)
    expect(err).toMatchObject({exitCode: 15, subject: key})
    expect(existsSync(target)).toBe(false)
  })
})

/**
 * Stores every object but `failing`'s archive, which fails at its first write once `waitFor`'s
 * archive has started (or after 10 s, if it never does: archives written one after another). With
 * `writer` the archives go through openWriter, FsBackend's own path; without it the backend offers
 * no writer (as S3) and archives are streamed to put.
 */
class FailingBackend extends FsBackend {
  readonly started: string[] = []
  /** How each other archive ended: 'stored', 'aborted' (its writer was discarded), or the name of put's error. */
  readonly outcomes = new Map<string, string>()
  private waitForStarted = () => {}
  private readonly waitForStart = new Promise<void>((resolve) => (this.waitForStarted = resolve))

  constructor(
    root: string,
    private readonly failing: string,
    private readonly waitFor: string | null,
    writer: boolean,
  ) {
    super(root)
    // An own property hides the prototype's method: the archive writer then falls back to put.
    if (!writer) Object.defineProperty(this, 'openWriter', {value: undefined})
  }

  private async begin(key: string): Promise<string> {
    const name = key.split('/').pop()!
    this.started.push(key)
    if (name === this.waitFor) this.waitForStarted()
    return name
  }

  private async injectedFailure(key: string): Promise<never> {
    await Promise.race([this.waitFor ? this.waitForStart : Promise.resolve(), new Promise((r) => setTimeout(r, this.waitFor ? 10_000 : 100))])
    throw new Error(`injected failure storing ${key}`)
  }

  override async put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<ObjectInfo> {
    if (!/\.tar(\.zst)?$/.test(key)) return super.put(key, body, options)
    const name = await this.begin(key)
    if (name !== this.failing) {
      try {
        const stored = await super.put(key, body, options)
        this.outcomes.set(name, 'stored')
        return stored
      } catch (error) {
        this.outcomes.set(name, (error as Error).name)
        throw error
      }
    }
    // The failure comes while the body is still open: closing it first would fail the archive's
    // stream with an abort before the injected error could.
    for await (const chunk of body as Readable) {
      void chunk
      await this.injectedFailure(key)
    }
    throw new Error(`${key}: the archive had no data`)
  }

  override async openWriter(key: string, options?: PutOptions): Promise<ObjectWriter> {
    const name = await this.begin(key)
    const inner = await super.openWriter(key, options)
    if (name === this.failing) return {...inner, write: () => this.injectedFailure(key)}
    let writes = 0
    return {
      write: async (data) => {
        // The archive waited for stays inside its data until the backup stops it: else a small one
        // could be stored before the failure reaches it.
        const signal = options?.signal
        if (name === this.waitFor && writes++ > 0 && signal && !signal.aborted) {
          await new Promise((resolve) => {
            signal.addEventListener('abort', resolve, {once: true})
            setTimeout(resolve, 10_000)
          })
        }
        return inner.write(data)
      },
      commit: async () => {
        const info = await inner.commit()
        this.outcomes.set(name, 'stored')
        return info
      },
      abort: async () => {
        this.outcomes.set(name, 'aborted')
        await inner.abort()
      },
    }
  }
}

describe.each([
  {path: 'openWriter', writer: true, stopped: 'aborted'},
  {path: 'a stream to put', writer: false, stopped: 'AbortError'},
])('a backup whose archive fails ($path)', {timeout: 180_000}, ({writer, stopped}) => {
  it('fails with the error of that archive, stops the archives written beside it and leaves no object, lock or temporary file', async () => {
    const root = await tmp('failing')
    const data = join(root, 'data')
    const spaces = ['alpha', 'beta', 'gamma', 'delta']
    await generateData({root: data, spaces, episodes: 400, seed: 31, startNs: T0, windowNs: HOUR, fsync: false})
    const repoDir = join(root, 'repo')
    await newRepo(repoDir)
    const backend = new FailingBackend(repoDir, 'beta.tar.zst', 'gamma.tar.zst', writer)
    const repo = await Repository.open(backend)
    await expect(backup(repo, data, 'full')).rejects.toThrow(/^injected failure storing backups\/.+\/beta\.tar\.zst$/)
    // Gamma's archive was being written beside beta's (archives are written concurrently) and was
    // stopped by beta's failure.
    expect(backend.started.some((k) => k.endsWith('/gamma.tar.zst'))).toBe(true)
    expect(backend.outcomes.get('gamma.tar.zst')).toBe(stopped)
    const backupsDir = join(repoDir, 'backups')
    expect(existsSync(backupsDir) ? await readdir(backupsDir, {recursive: true}) : []).toEqual([])
    expect(existsSync(join(repoDir, 'locks', 'repository.lock'))).toBe(false)
    expect((await repo.backups()).length).toBe(0)
    // The next backup succeeds.
    const next = await backup(await Repository.open(new FsBackend(repoDir)), data, 'full')
    expect(next.result.totals.files).toBe(spaces.length)
  })
})

describe('an incremental whose only archive fails', {timeout: 180_000}, () => {
  it('commits nothing: the spaces after it have nothing new, and the failure still ends the backup', async () => {
    const root = await tmp('failing-incr')
    const data = join(root, 'data')
    const repoDir = join(root, 'repo')
    await generateData({root: data, spaces: ['alpha', 'beta', 'gamma'], episodes: 50, seed: 51, startNs: T0, windowNs: HOUR, fsync: false})
    const repo = await newRepo(repoDir)
    const full = await backup(repo, data, 'full')
    await generateData({root: data, spaces: ['alpha'], episodes: 20, seed: 52, startNs: T0 + 2n * HOUR, windowNs: HOUR, append: true, fsync: false})
    // Alpha's archive fails (100 ms in) after the other spaces (with nothing new) have been looked at.
    const failing = await Repository.open(new FailingBackend(repoDir, 'alpha.tar.zst', null, true))
    await expect(backup(failing, data, 'incremental')).rejects.toThrow(/^injected failure storing backups\/.+\/alpha\.tar\.zst$/)
    expect((await repo.backups()).map((b) => b.id)).toEqual([full.result.id])
    expect(await readdir(join(repoDir, 'backups'))).toEqual([full.result.id])
  })
})

describe('archives are standard', {timeout: 180_000}, () => {
  it('zstd -dc | tar -t lists exactly the manifest entries of every archive; --compression none gives a .tar', async () => {
    const root = await tmp('std')
    const data = join(root, 'data')
    await generateData({root: data, spaces: ['alpha', 'beta'], episodes: 20, seed: 101, startNs: T0, windowNs: HOUR, fsync: false})
    const zRepoDir = join(root, 'repo-zstd')
    const nRepoDir = join(root, 'repo-none')
    const zRepo = await newRepo(zRepoDir)
    const nRepo = await newRepo(nRepoDir, {codec: 'none'})
    await backup(zRepo, data, 'full')
    await backup(nRepo, data, 'full')
    await generateData({root: data, spaces: ['alpha'], episodes: 5, seed: 102, startNs: T0 + 2n * HOUR, windowNs: HOUR, append: true, fsync: false})
    await generateData({root: data, spaces: ['beta'], episodes: 5, seed: 103, startNs: T0 + 3n * HOUR, windowNs: HOUR, fsync: false})
    await backup(zRepo, data, 'incremental')
    // The repository default can be overridden per backup.
    await backup(nRepo, data, 'incremental', {compression: {codec: 'none'}})
    const zMixed = await backup(zRepo, data, 'full', {compression: {codec: 'none'}})
    expect(zMixed.manifest.compression).toEqual({codec: 'none'})

    const check = async (repoDir: string, repository: Repository, tag: string) => {
      let archives = 0
      for (const m of await repository.completeBackups()) {
        for (const sp of m.spaces) {
          if (!sp.archive) continue
          archives++
          const path = join(repoDir, ...sp.archive.key.split('/'))
          expect(sp.archive.key.endsWith(m.compression.codec === 'zstd' ? '.tar.zst' : '.tar')).toBe(true)
          const listing =
            m.compression.codec === 'zstd'
              ? execFileSync('bash', ['-o', 'pipefail', '-c', 'zstd -dc "$1" | tar -t', 'list', path], {encoding: 'utf8'})
              : execFileSync('tar', ['-tf', path], {encoding: 'utf8'})
          expect(listing.split('\n').filter(Boolean)).toEqual(sp.files.map((f) => f.entry))
          if (m.compression.codec === 'zstd') execFileSync('zstd', ['-tq', path])
          // Unpacked by hand, every entry is the bytes the manifest describes.
          const out = join(root, `x-${tag}-${archives}`)
          await mkdir(out)
          execFileSync('bash', ['-o', 'pipefail', '-c', m.compression.codec === 'zstd' ? 'zstd -dc "$1" | tar -x -C "$2"' : 'tar -xf "$1" -C "$2"', 'x', path, out])
          for (const f of sp.files) {
            const bytes = await readFile(join(out, f.entry))
            expect(bytes.length).toBe(f.length)
            expect(blake3(bytes)).toBe(f.hash)
          }
          const st = await stat(join(out, sp.files[0].entry))
          expect(st.mode & 0o777).toBe(0o600)
        }
      }
      return archives
    }
    expect(await check(zRepoDir, zRepo, 'zstd')).toBe(2 + 2 + 2)
    expect(await check(nRepoDir, nRepo, 'none')).toBe(2 + 2)
    const nKeys: string[] = []
    for await (const o of nRepo.backend.list('backups/')) if (!o.key.endsWith('.json')) nKeys.push(o.key)
    expect(nKeys.length).toBe(4)
    for (const k of nKeys) expect(k).toMatch(/^backups\/[^/]+\/(alpha|beta)\.tar$/)
  })
})
