/**
 * Point-in-time recovery is exact: for every target, the restored WAL files hold exactly the records
 * of the source files whose header timestamp is at (or before) the target, byte for byte and in
 * offset order, in every space; the base is the earliest backup whose snapshot reaches the target;
 * targets no backup can reach exit 16 and name the nearest recoverable points (before the first
 * record, after the last snapshot, across a compaction that rewrote timestamps).
 */
import {existsSync} from 'node:fs'
import {mkdtemp, readdir, readFile, rm, unlink} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {runBackup, WRITE_LATENCY_MARGIN_NS} from '../../src/lib/backup/backup.js'
import {formatRfc3339, nowNs} from '../../src/lib/engine/datetime.js'
import {makeEpisode, Prng} from '../../src/lib/engine/generate.js'
import {listWalFiles, walFileName} from '../../src/lib/engine/layout.js'
import {encodeEpisode} from '../../src/lib/engine/payload.js'
import {WalFileReader} from '../../src/lib/engine/reader.js'
import {EntryType} from '../../src/lib/engine/record.js'
import {ensureSpaceDirs, WalWriter} from '../../src/lib/engine/writer.js'
import {ExitCode} from '../../src/lib/errors.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import type {Manifest} from '../../src/lib/repo/manifest.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {type PitrTarget, TargetNotAvailableError} from '../../src/lib/restore/pitr.js'
import {runPitr} from '../../src/lib/restore/restore.js'
import {silentReporter} from '../../src/lib/ui/reporter.js'
import {repoRoot, sha256} from '../support/fixtures.js'
import {runCli} from '../support/cli.js'

// ---------------------------------------------------------------------------------------------
// Helpers

// A backup's snapshot is set WRITE_LATENCY_MARGIN_NS before it sizes the files: let records settle
// that long before each backup so they fall on the expected side of it.
const SETTLE_MS = Number(WRITE_LATENCY_MARGIN_NS / 1_000_000n) + 50

const SEC = 1_000_000_000n
const rng = new Prng(20261128)
let episodeCounter = 0

interface SrcRecord {
  space: string
  file: string
  offset: number
  sequence: bigint
  ts: bigint
  bytes: Buffer
}

/** Appends records with exactly these timestamps to `<root>/<space>/wal/wal-<secs>.log`. */
async function writeRecords(root: string, space: string, secs: bigint, stamps: bigint[]): Promise<void> {
  await ensureSpaceDirs(join(root, space))
  const walDir = join(root, space, 'wal')
  // Continue the file's sequence, as the same writer would.
  let firstSequence = 0n
  const path = join(walDir, walFileName(secs))
  if (existsSync(path)) for await (const r of new WalFileReader(path).records()) firstSequence = r.header.sequence + 1n
  const w = await WalWriter.open(walDir, {createdAtSecs: secs, firstSequence, fsync: false})
  try {
    await w.append(
      stamps.map((ts) => ({entryType: EntryType.EpisodeStore, payload: encodeEpisode(makeEpisode(rng, `${space}-ep-${episodeCounter++}`, ts)), timestampNs: ts})),
    )
  } finally {
    await w.close()
  }
}

/** Every record of every WAL file under `root`, in file-name then offset order, with its raw bytes. */
async function sourceRecords(root: string): Promise<SrcRecord[]> {
  const out: SrcRecord[] = []
  for (const space of (await readdir(root)).sort()) {
    for (const f of await listWalFiles(join(root, space, 'wal'))) {
      const buf = await readFile(f.path)
      for await (const r of new WalFileReader(f.path).records()) {
        expect(r.validity).toBe('ok')
        out.push({space, file: f.name, offset: r.offset, sequence: r.header.sequence, ts: r.header.timestampNs, bytes: buf.subarray(r.offset, r.offset + r.recordSize)})
      }
    }
  }
  return out
}

/** `space/wal/file` -> sha256 and size of the concatenated records, for files with at least one. */
function expectedFiles(records: SrcRecord[]): Record<string, string> {
  const files = new Map<string, Buffer[]>()
  for (const r of records) {
    const key = `${r.space}/wal/${r.file}`
    if (!files.has(key)) files.set(key, [])
    files.get(key)!.push(r.bytes)
  }
  return Object.fromEntries([...files].map(([k, parts]) => {
    const b = Buffer.concat(parts)
    return [k, `${b.length}:${sha256(b)}`]
  }))
}

/** The WAL files a restore wrote, in the same shape; also checks every space has Engram's dirs. */
async function restoredFiles(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const space of (await readdir(dir)).sort()) {
    expect((await readdir(join(dir, space))).sort()).toEqual(['cold', 'hot', 'wal', 'warm'])
    for (const name of (await readdir(join(dir, space, 'wal'))).sort()) {
      const b = await readFile(join(dir, space, 'wal', name))
      out[`${space}/wal/${name}`] = `${b.length}:${sha256(b)}`
    }
  }
  return out
}

function keepByTime(records: SrcRecord[], t: bigint, exclusive: boolean): SrcRecord[] {
  return records.filter((r) => (exclusive ? r.ts < t : r.ts <= t))
}

/** The earliest backup whose snapshot is at or after the (inclusive-equivalent) target. */
function expectedBase(backups: Manifest[], t: bigint, exclusive: boolean): Manifest {
  const effective = exclusive ? t - 1n : t
  return backups.find((m) => BigInt(m.snapshotNs) >= effective)!
}


const cli = runCli

let tmp: string
let restoreCounter = 0
const freshTarget = () => join(tmp, 'restores', `r${restoreCounter++}`)

async function backup(repo: Repository, dataDir: string, type: 'full' | 'incremental'): Promise<Manifest> {
  const r = await runBackup({repo, dataDir, type, spaces: [], compression: {codec: 'zstd', level: 1}, lockWaitMs: 0, reporter: silentReporter()})
  expect(r.type).toBe(type)
  return repo.manifest(r.id)
}

/** Restores `target` and returns what landed, removing it afterwards. */
async function pitr(repo: Repository, target: PitrTarget, spaces: string[] = []) {
  const to = freshTarget()
  const result = await runPitr(repo, {target, spaces, to, yes: false, dryRun: false, reporter: silentReporter()})
  const files = await restoredFiles(to)
  await rm(to, {recursive: true, force: true})
  return {result, files}
}

async function pitrError(repo: Repository, target: PitrTarget, spaces: string[] = []): Promise<TargetNotAvailableError> {
  const to = freshTarget()
  const error = await runPitr(repo, {target, spaces, to, yes: false, dryRun: false, reporter: silentReporter()}).then(
    () => null,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(TargetNotAvailableError)
  expect((error as TargetNotAvailableError).exitCode).toBe(16)
  expect(existsSync(to)).toBe(false)
  return error as TargetNotAvailableError
}

const nearestOf = (e: TargetNotAvailableError) => (e.details as {nearest: Array<{ns: string; time: string; why: string}>}).nearest

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'restore', 'pitr.js'))) throw new Error('dist/ is not built')
  // Restores fsync every file: on tmpfs that costs nothing, and hundreds of restores stay fast.
  tmp = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'engram-pitr-'))
})
afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

// ---------------------------------------------------------------------------------------------
// Scenario 1: three spaces, a full backup and two incrementals, nearly monotone timestamps.

describe('PITR over a full backup and two incrementals, three spaces', () => {
  let data: string
  let repo: Repository
  let backups: Manifest[]
  let records: SrcRecord[]
  let T0: bigint
  let T0secs: bigint
  const A1 = () => walFileName(T0secs) // alpha's first file; gamma's first file has the same name
  const A2 = () => walFileName(T0secs + 200n)
  const B1 = () => walFileName(T0secs + 1n)
  const B2 = () => walFileName(T0secs + 100n)

  beforeAll(async () => {
    data = join(tmp, 'data1')
    repo = await Repository.init(new FsBackend(join(tmp, 'repo1')), {codec: 'zstd', level: 1})
    T0 = nowNs() - 3600n * SEC
    T0secs = T0 / SEC
    // Phase 1 (before the full backup): a record earlier than the one before it in the same file
    // (alpha #5, beta #3), and a timestamp shared by records of two spaces (alpha #2 = beta #2).
    const alpha1 = [0n, 1n, 2n, 3n, 5n, 4n, 6n, 7n, 8n, 9n].map((k) => T0 + k * SEC + 123n)
    const beta1 = [T0 + 500_000_000n, T0 + 1_700_000_000n, T0 + 2n * SEC + 123n, T0 + 2n * SEC, T0 + 4n * SEC + 1n, T0 + 6n * SEC, T0 + 6n * SEC + 1n, T0 + 11n * SEC]
    const gamma1 = [1n, 3n, 5n, 7n, 9n].map((k) => T0 + k * SEC + 777_777n)
    await writeRecords(data, 'alpha', T0secs, alpha1)
    await writeRecords(data, 'beta', T0secs + 1n, beta1)
    await writeRecords(data, 'gamma', T0secs, gamma1)
    const full = await backup(repo, data, 'full')

    // Phase 2: later timestamps (after the full's snapshot), again one out of order; gamma unchanged.
    let b = nowNs() + 1000n
    expect(b).toBeGreaterThan(BigInt(full.snapshotNs))
    await writeRecords(data, 'alpha', T0secs, [b + 10n, b + 20n, b + 15n, b + 40n])
    await writeRecords(data, 'beta', T0secs + 100n, [b + 5n, b + 20n, b + 30n, b + 25n])
    await sleep(SETTLE_MS)
    const inc1 = await backup(repo, data, 'incremental')

    // Phase 3: alpha starts a new file, beta and gamma append.
    b = nowNs() + 1000n
    expect(b).toBeGreaterThan(BigInt(inc1.snapshotNs))
    await writeRecords(data, 'alpha', T0secs + 200n, [b + 100n, b + 50n, b + 200n, b + 300n, b + 301n])
    await writeRecords(data, 'beta', T0secs + 100n, [b + 1n, b + 2n, b + 100n, b + 99n])
    await writeRecords(data, 'gamma', T0secs, [b + 7n, b + 6n, b + 8n])
    await sleep(SETTLE_MS)
    const inc2 = await backup(repo, data, 'incremental')
    backups = await repo.completeBackups()
    expect(backups.map((m) => m.id)).toEqual([full.id, inc1.id, inc2.id])
    expect(inc2.chain).toEqual([full.id, inc1.id, inc2.id])
    records = await sourceRecords(data)
    expect(records.length).toBe(10 + 4 + 5 + 8 + 4 + 4 + 5 + 3)
    // Every record was written before the snapshot of the backup that first captured it.
    for (const r of records) expect(r.ts).toBeLessThan(BigInt(inc2.snapshotNs))
    // The scenario really is only nearly monotone within files.
    const inversions = records.filter((r, i) => i > 0 && records[i - 1].space === r.space && records[i - 1].file === r.file && r.ts < records[i - 1].ts)
    expect(inversions.length).toBeGreaterThanOrEqual(5)
  })

  async function checkTime(t: bigint, exclusive: boolean): Promise<void> {
    const {result, files} = await pitr(repo, {kind: 'time', ns: t, exclusive})
    const kept = keepByTime(records, t, exclusive)
    expect(files, `target ${t}${exclusive ? ' exclusive' : ''}`).toEqual(expectedFiles(kept))
    expect(result.backup).toBe(expectedBase(backups, t, exclusive).id)
    expect(result.spaces).toEqual(['alpha', 'beta', 'gamma'])
    expect(result.pitrResult!.kept).toBe(kept.length)
    expect(result.pitr).toEqual({target: formatRfc3339(t), exclusive})
    expect(result.dryRun).toBe(false)
  }

  /** Runs the checks a few at a time (restores are independent). */
  async function checkAll(targets: Array<[bigint, boolean]>): Promise<void> {
    for (let i = 0; i < targets.length; i += 4) await Promise.all(targets.slice(i, i + 4).map(([t, exclusive]) => checkTime(t, exclusive)))
  }

  it('keeps exactly the records at and just before every record timestamp, byte for byte', async () => {
    const stamps = [...new Set(records.map((r) => r.ts))].sort((a, b) => (a < b ? -1 : 1))
    await checkAll(stamps.flatMap((ts, i) => (i === 0 ? [[ts, false]] : [[ts, false], [ts - 1n, false]]) as Array<[bigint, boolean]>))
  })

  it('--target-exclusive keeps exactly the records strictly before the target (at and just after every timestamp)', async () => {
    const stamps = [...new Set(records.map((r) => r.ts))].sort((a, b) => (a < b ? -1 : 1))
    await checkAll(stamps.flatMap((ts, i) => (i === 0 ? [[ts + 1n, true]] : [[ts, true], [ts + 1n, true]]) as Array<[bigint, boolean]>))
  })

  it('snapshot edges and points between backups choose the earliest backup that reaches the target', async () => {
    const [s1, s2, s3] = backups.map((m) => BigInt(m.snapshotNs))
    // Exclusive t+1 is inclusive t: same records, same base.
    await checkAll([s1 - 1n, s1, s1 + 1n, (s1 + s2) / 2n, s2 - 1n, s2, s2 + 1n, (s2 + s3) / 2n, s3 - 1n, s3].flatMap((t) => [[t, false], [t + 1n, true]] as Array<[bigint, boolean]>))
    expect((await pitr(repo, {kind: 'time', ns: s1, exclusive: false})).result.backup).toBe(backups[0].id)
    expect((await pitr(repo, {kind: 'time', ns: s1 + 1n, exclusive: false})).result.backup).toBe(backups[1].id)
    expect((await pitr(repo, {kind: 'time', ns: s1 + 1n, exclusive: true})).result.backup).toBe(backups[0].id)
    expect((await pitr(repo, {kind: 'time', ns: s3, exclusive: false})).result.chain.map((c) => c.id)).toEqual(backups.map((m) => m.id))
  })

  it('random targets across the whole history', async () => {
    const prng = new Prng(7)
    const lo = T0
    const hi = BigInt(backups[2].snapshotNs)
    const span = hi - lo
    const targets: Array<[bigint, boolean]> = []
    for (let i = 0; i < 24; i++) {
      // Mix uniform targets with targets in the dense later phases.
      const frac = (BigInt(prng.u32()) * span) / 4294967296n
      targets.push([i % 2 === 0 ? lo + frac : hi - (frac % 100_000_000n), prng.int(2) === 1])
    }
    await checkAll(targets)
  })

  it('restores a single space with --space and leaves the others out', async () => {
    const t = T0 + 5n * SEC + 123n
    const {result, files} = await pitr(repo, {kind: 'time', ns: t, exclusive: false}, ['beta'])
    expect(result.spaces).toEqual(['beta'])
    expect(files).toEqual(expectedFiles(keepByTime(records, t, false).filter((r) => r.space === 'beta')))
  })

  it('a target before the first backed-up record exits 16 naming the first record', async () => {
    const first = records.reduce((m, r) => (r.ts < m ? r.ts : m), records[0].ts)
    expect(first).toBe(T0 + 123n)
    for (const [t, exclusive] of [
      [first - 1n, false],
      [first, true], // strictly before the first record: nothing would be restored
      [first - 3600n * SEC, false],
    ] as const) {
      const e = await pitrError(repo, {kind: 'time', ns: t, exclusive})
      expect(e.message).toContain(`target ${formatRfc3339(t)} is before the first backed-up record`)
      expect(nearestOf(e)).toEqual([{ns: String(first), time: formatRfc3339(first), why: `first record in backup ${backups[0].id}`}])
      expect(e.message).toContain(`nearest recoverable points: ${formatRfc3339(first)} (first record in backup ${backups[0].id})`)
    }
    // The first record itself is recoverable: exactly the records stamped with it.
    const {files} = await pitr(repo, {kind: 'time', ns: first, exclusive: false})
    expect(files).toEqual(expectedFiles(records.filter((r) => r.ts === first)))
    expect(Object.keys(files)).toEqual([`alpha/wal/${A1()}`])
  })

  it('a target after the last snapshot exits 16 naming the last snapshot', async () => {
    const last = backups[2]
    const s3 = BigInt(last.snapshotNs)
    for (const [t, exclusive] of [
      [s3 + 1n, false],
      [s3 + 2n, true],
      [nowNs() + 3600n * SEC, false],
    ] as const) {
      const e = await pitrError(repo, {kind: 'time', ns: t, exclusive})
      expect(e.message).toContain(`is after the last backup`)
      expect(nearestOf(e)).toEqual([{ns: String(s3), time: formatRfc3339(s3), why: `snapshot of the last backup ${last.id}`}])
    }
  })

  describe('--target-seq FILE:SEQ', () => {
    it('keeps every record of earlier files and the target file up to the sequence, drops later files', async () => {
      // alpha: A1 holds sequences 0..13 (0..9 in the full, 10..13 in the first incremental), A2 0..4.
      for (const [seq, base] of [
        [0n, 0],
        [4n, 0],
        [9n, 0],
        [10n, 1],
        [13n, 1],
      ] as const) {
        for (const exclusive of [false, true]) {
          const {result, files} = await pitr(repo, {kind: 'seq', file: A1(), sequence: seq, exclusive}, ['alpha'])
          const kept = records.filter((r) => r.space === 'alpha' && r.file === A1() && (exclusive ? r.sequence < seq : r.sequence <= seq))
          expect(files, `${A1()}:${seq}${exclusive ? ' exclusive' : ''}`).toEqual(expectedFiles(kept))
          expect(result.spaces).toEqual(['alpha'])
          expect(result.backup).toBe(backups[base].id)
          expect(result.pitr).toEqual({target: `${A1()}:${seq}`, exclusive})
        }
      }
      // A position in the newest file keeps all of the older file.
      const {result, files} = await pitr(repo, {kind: 'seq', file: A2(), sequence: 2n, exclusive: false}, ['alpha'])
      expect(result.backup).toBe(backups[2].id)
      expect(files).toEqual(expectedFiles(records.filter((r) => r.space === 'alpha' && (r.file === A1() || r.sequence <= 2n))))
    })

    it('a file only one space has needs no --space; beta B2 across two incrementals', async () => {
      for (const seq of [0n, 3n, 4n, 7n]) {
        const {result, files} = await pitr(repo, {kind: 'seq', file: B2(), sequence: seq, exclusive: false})
        expect(result.spaces).toEqual(['beta'])
        expect(result.backup).toBe(backups[seq <= 3n ? 1 : 2].id)
        expect(files).toEqual(expectedFiles(records.filter((r) => r.space === 'beta' && (r.file === B1() || (r.file === B2() && r.sequence <= seq)))))
      }
    })

    it('a file name two spaces share is ambiguous without --space: exit 2', async () => {
      const e = await runPitr(repo, {target: {kind: 'seq', file: A1(), sequence: 1n, exclusive: false}, spaces: [], to: freshTarget(), yes: false, dryRun: false, reporter: silentReporter()}).then(
        () => null,
        (error: unknown) => error as {exitCode: number; message: string},
      )
      expect(e?.exitCode).toBe(ExitCode.usage)
      expect(e?.message).toBe(`spaces alpha, gamma have a WAL file ${A1()}`)
      const two = await runPitr(repo, {target: {kind: 'seq', file: A1(), sequence: 1n, exclusive: false}, spaces: ['alpha', 'gamma'], to: freshTarget(), yes: false, dryRun: false, reporter: silentReporter()}).then(
        () => null,
        (error: unknown) => error as {exitCode: number},
      )
      expect(two?.exitCode).toBe(ExitCode.usage)
    })

    it('an unknown file or a sequence no backup holds exits 16', async () => {
      const last = backups[2]
      // A name sorting before every file of the space, after every file, and one no space has at all.
      for (const [file, spaces] of [
        [walFileName(1n), ['alpha']],
        [walFileName(T0secs + 5000n), ['alpha']],
        [walFileName(T0secs + 5000n), []],
      ] as const) {
        const e = await pitrError(repo, {kind: 'seq', file, sequence: 0n, exclusive: false}, [...spaces])
        expect(e.message).toContain(`no backup contains ${file} sequence 0`)
      }
      const e = await pitrError(repo, {kind: 'seq', file: A2(), sequence: 5n, exclusive: false}, ['alpha'])
      expect(nearestOf(e)).toEqual([{ns: last.snapshotNs, time: formatRfc3339(BigInt(last.snapshotNs)), why: `snapshot of the last backup ${last.id}`}])
    })
  })

  describe('through the CLI', () => {
    it('restore pitr --target-time --dry-run prints the plan and writes nothing', async () => {
      const t = T0 + 3n * SEC + 123n
      const to = join(tmp, 'cli-dry', 'target')
      const [r, json] = await Promise.all([
        cli(['restore', 'pitr', '--target-time', formatRfc3339(t), '--repo', join(tmp, 'repo1'), '--to', to, '--dry-run']),
        cli(['restore', 'pitr', '--target-time', formatRfc3339(BigInt(backups[1].snapshotNs) + 1n), '--target-exclusive', '--repo', join(tmp, 'repo1'), '--to', to, '--dry-run', '--json']),
      ])
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const full = backups[0]
      const lines = r.stdout.split('\n').filter(Boolean)
      expect(lines[0]).toBe(`plan: restore backup ${full.id} (chain ${full.id} full)`)
      expect(lines[1]).toBe(`  spaces alpha, beta, gamma into ${to} (target missing)`)
      expect(lines.slice(2, 5)).toEqual(full.spaces.map((s) => expect.stringMatching(new RegExp(`^  ${s.archive!.key} `))))
      expect(lines[5]).toMatch(/^  3 objects, .+ to read$/)
      expect(lines[6]).toBe(`  point in time: records at or before ${formatRfc3339(t)}`)
      expect(lines).toHaveLength(7)
      expect(existsSync(join(tmp, 'cli-dry'))).toBe(false)

      expect(json.code).toBe(0)
      const doc = JSON.parse(json.stdout)
      expect(doc.dryRun).toBe(true)
      expect(doc.backup).toBe(backups[1].id)
      expect(doc.chain.map((c: {id: string}) => c.id)).toEqual([backups[0].id, backups[1].id])
      expect(doc.restoredBytes).toBe(0)
      expect(existsSync(join(tmp, 'cli-dry'))).toBe(false)
    })

    it('restores exactly through the CLI', async () => {
      const t = BigInt(backups[1].snapshotNs) + 1n
      const to = join(tmp, 'cli-real')
      const r = await cli(['restore', 'pitr', '--target-time', formatRfc3339(t), '--repo', join(tmp, 'repo1'), '--to', to, '--json'])
      expect(r.code).toBe(0)
      const doc = JSON.parse(r.stdout)
      expect(doc.backup).toBe(backups[2].id)
      expect(doc.pitrResult.kept).toBe(keepByTime(records, t, false).length)
      expect(await restoredFiles(to)).toEqual(expectedFiles(keepByTime(records, t, false)))
    })

    it('exit 16 with the nearest points in --json error output', async () => {
      const first = T0 + 123n
      const s3 = BigInt(backups[2].snapshotNs)
      const repoDir = join(tmp, 'repo1')
      const [before, after, text, seq, seqOk, unknown] = await Promise.all([
        cli(['restore', 'pitr', '--target-time', formatRfc3339(first - 1n), '--repo', repoDir, '--to', join(tmp, 'cli-16'), '--json']),
        cli(['restore', 'pitr', '--target-time', formatRfc3339(s3 + 1n), '--repo', repoDir, '--to', join(tmp, 'cli-16'), '--json']),
        cli(['restore', 'pitr', '--target-time', formatRfc3339(s3 + 1n), '--repo', repoDir, '--to', join(tmp, 'cli-16')]),
        cli(['restore', 'pitr', '--target-seq', `${A1()}:1`, '--repo', repoDir, '--to', join(tmp, 'cli-16'), '--json']),
        cli(['restore', 'pitr', '--target-seq', `${A1()}:12`, '--space', 'alpha', '--repo', repoDir, '--to', join(tmp, 'cli-seq'), '--json']),
        cli(['restore', 'pitr', '--target-seq', `${walFileName(1n)}:0`, '--repo', repoDir, '--to', join(tmp, 'cli-16'), '--json']),
      ])
      expect(before.code).toBe(16)
      const err = JSON.parse(before.stdout).error
      expect(err.exitCode).toBe(16)
      expect(err.code).toBe('PITR_TARGET_UNAVAILABLE')
      expect(err.details.nearest).toEqual([{ns: String(first), time: formatRfc3339(first), why: `first record in backup ${backups[0].id}`}])

      expect(after.code).toBe(16)
      expect(JSON.parse(after.stdout).error.details.nearest).toEqual([{ns: String(s3), time: formatRfc3339(s3), why: `snapshot of the last backup ${backups[2].id}`}])

      expect(text.code).toBe(16)
      expect(text.stderr.replace(/\s+›?\s*/g, ' ')).toContain(`nearest recoverable points: ${formatRfc3339(s3)} (snapshot of the last backup ${backups[2].id})`)
      expect(existsSync(join(tmp, 'cli-16'))).toBe(false)

      expect(seq.code).toBe(2)
      expect(JSON.parse(seq.stdout).error.code).toBe('SEQ_TARGET_AMBIGUOUS')
      expect(seqOk.code).toBe(0)
      expect(await restoredFiles(join(tmp, 'cli-seq'))).toEqual(expectedFiles(records.filter((r) => r.space === 'alpha' && r.file === A1() && r.sequence <= 12n)))
      expect(unknown.code).toBe(16)
      expect(JSON.parse(unknown.stdout).error.code).toBe('PITR_TARGET_UNAVAILABLE')
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Scenario 2: Engram's compaction rewrites every record's timestamp.

/** Replaces every WAL file of `space` by one new file whose records all carry timestamp `at`. */
async function compact(root: string, space: string, at: bigint): Promise<string> {
  const walDir = join(root, space, 'wal')
  const old = await listWalFiles(walDir)
  const payloads: Buffer[] = []
  for (const f of old) for await (const r of new WalFileReader(f.path).records()) payloads.push(Buffer.from(r.payload!))
  const w = await WalWriter.open(walDir, {createdAtSecs: at / SEC, firstSequence: 0n, fsync: false})
  await w.append(payloads.map((payload) => ({entryType: EntryType.EpisodeStore, payload, timestampNs: at})))
  await w.close()
  for (const f of old) if (f.name !== w.name) await unlink(f.path)
  return w.name
}

describe.each(['incremental', 'full'] as const)('PITR across a compaction (backup after it: %s)', (afterType) => {
  let n = 0
  async function scenario(withMiddleBackup: boolean, compactBoth = false) {
    const data = join(tmp, `compact-${afterType}-${n}`)
    const repoDir = join(tmp, `compact-repo-${afterType}-${n++}`)
    const repo = await Repository.init(new FsBackend(repoDir), {codec: 'zstd', level: 1})
    const T0 = nowNs() - 7200n * SEC
    const secs = T0 / SEC
    await writeRecords(data, 'delta', secs, [T0 + 1n, T0 + 3n, T0 + 2n, T0 + 10n])
    await writeRecords(data, 'omega', secs + 3n, [T0 + 5n, T0 + 6n])
    const b1 = await backup(repo, data, 'full')
    let b = nowNs() + 1000n
    await writeRecords(data, 'delta', secs, [b + 1n, b + 2n])
    await writeRecords(data, 'omega', secs + 3n, [b + 3n])
    let middle: Manifest | null = null
    if (withMiddleBackup) {
      await sleep(SETTLE_MS)
      middle = await backup(repo, data, 'incremental')
      b = nowNs() + 1000n
      await writeRecords(data, 'delta', secs, [b + 1n, b + 5n, b + 4n])
    }
    await sleep(SETTLE_MS)
    const preCompaction = await sourceRecords(data)
    const C = nowNs() + 1_000_000n
    const compactedName = await compact(data, 'delta', C)
    // Engram compacts space after space: a second space a little later.
    await sleep(SETTLE_MS)
    const C2 = nowNs() + 1_000_000n
    if (compactBoth) await compact(data, 'omega', C2)
    await sleep(SETTLE_MS)
    const after = await backup(repo, data, afterType)
    expect(after.type).toBe(afterType)
    if (afterType === 'incremental') {
      expect(after.compaction).toEqual({detected: true, spaces: compactBoth ? ['delta', 'omega'] : ['delta'], rewriteTimeNs: String(C)})
      expect(after.spaces.find((s) => s.space === 'delta')!.gone).toEqual([walFileName(secs)])
    }
    const postCompaction = await sourceRecords(data)
    expect(postCompaction.filter((r) => r.space === 'delta').every((r) => r.ts === C && r.file === compactedName)).toBe(true)
    return {repo, b1, middle, after, C, C2, preCompaction, postCompaction}
  }

  it('without a backup in between, a target between the last snapshot and the compaction exits 16', async () => {
    const {repo, b1, after, C, preCompaction, postCompaction} = await scenario(false)
    const s1 = BigInt(b1.snapshotNs)
    for (const [t, exclusive] of [
      [s1 + 1n, false],
      [(s1 + C) / 2n, false],
      [C - 1n, false],
      [C, true], // strictly before the compaction: the rewritten records are not there, the old ones are gone
    ] as const) {
      const e = await pitrError(repo, {kind: 'time', ns: t, exclusive})
      expect(e.message).toContain(`lies across a compaction at ${formatRfc3339(C)} that rewrote record timestamps, and no backup was taken between them`)
      expect(nearestOf(e)).toEqual([
        {ns: String(s1), time: formatRfc3339(s1), why: `last snapshot before the compaction, backup ${b1.id}`},
        {ns: String(C), time: formatRfc3339(C), why: 'the compaction (records from then on are recoverable)'},
      ])
    }
    // Before the last pre-compaction snapshot: exact, from the full backup.
    for (const t of [s1, s1 - 1n, preCompaction[2].ts]) {
      const {result, files} = await pitr(repo, {kind: 'time', ns: t, exclusive: false})
      expect(result.backup).toBe(b1.id)
      expect(files).toEqual(expectedFiles(keepByTime(preCompaction, t, false)))
    }
    // From the compaction on: the rewritten records.
    for (const t of [C, C + 1n, BigInt(after.snapshotNs)]) {
      const {result, files} = await pitr(repo, {kind: 'time', ns: t, exclusive: false})
      expect(result.backup).toBe(after.id)
      expect(files).toEqual(expectedFiles(keepByTime(postCompaction, t, false)))
    }
    // Restoring only the space that was not compacted is not affected by delta's compaction.
    const omegaOnly = await pitr(repo, {kind: 'time', ns: (s1 + C) / 2n, exclusive: false}, ['omega'])
    expect(omegaOnly.files).toEqual(expectedFiles(keepByTime(postCompaction, (s1 + C) / 2n, false).filter((r) => r.space === 'omega')))
  })

  it('two spaces compacted at different times: the later compaction bounds what all of them can reach', async () => {
    const {repo, b1, after, C, C2, postCompaction} = await scenario(false, true)
    const s1 = BigInt(b1.snapshotNs)
    const between = (C + C2) / 2n
    const e = await pitrError(repo, {kind: 'time', ns: between, exclusive: false})
    expect(nearestOf(e).map((p) => p.ns)).toEqual([String(s1), String(C2)])
    // omega's old records before C2 are gone: omega alone cannot reach it either.
    const omega = await pitrError(repo, {kind: 'time', ns: between, exclusive: false}, ['omega'])
    expect(nearestOf(omega).map((p) => p.ns)).toEqual([String(s1), String(C2)])
    // delta alone was compacted at C <= between: exact.
    const delta = await pitr(repo, {kind: 'time', ns: between, exclusive: false}, ['delta'])
    expect(delta.result.backup).toBe(after.id)
    expect(delta.files).toEqual(expectedFiles(keepByTime(postCompaction, between, false).filter((r) => r.space === 'delta')))
    // From C2 on, everything.
    for (const t of [C2, BigInt(after.snapshotNs)]) {
      const {result, files} = await pitr(repo, {kind: 'time', ns: t, exclusive: false})
      expect(result.backup).toBe(after.id)
      expect(files).toEqual(expectedFiles(keepByTime(postCompaction, t, false)))
    }
  })

  it('with a backup taken in between, targets up to its snapshot succeed exactly', async () => {
    const {repo, b1, middle, after, C, preCompaction, postCompaction} = await scenario(true)
    const s1 = BigInt(b1.snapshotNs)
    const sm = BigInt(middle!.snapshotNs)
    for (const t of [s1 + 1n, (s1 + sm) / 2n, sm]) {
      const {result, files} = await pitr(repo, {kind: 'time', ns: t, exclusive: false})
      expect(result.backup).toBe(middle!.id)
      expect(files).toEqual(expectedFiles(keepByTime(preCompaction, t, false)))
    }
    const e = await pitrError(repo, {kind: 'time', ns: sm + 1n, exclusive: false})
    expect(nearestOf(e).map((p) => p.ns)).toEqual([String(sm), String(C)])
    expect(nearestOf(e)[0].why).toBe(`last snapshot before the compaction, backup ${middle!.id}`)
    const {result, files} = await pitr(repo, {kind: 'time', ns: C, exclusive: false})
    expect(result.backup).toBe(after.id)
    expect(files).toEqual(expectedFiles(keepByTime(postCompaction, C, false)))
  })
})
