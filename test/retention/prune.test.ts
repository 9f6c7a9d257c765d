/**
 * runPrune and `backup prune` on real repositories (FsBackend) holding real small backups: dry-run by
 * default, `--yes` deletes exactly the planned backups (manifest first) and the objects of failed
 * backups, a second run deletes nothing, and it is safe beside a backup (it waits for the lock).
 */
import {existsSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {runBackup} from '../../src/lib/backup/backup.js'
import {nowNs} from '../../src/lib/engine/datetime.js'
import {makeEpisode, Prng} from '../../src/lib/engine/generate.js'
import {encodeEpisode} from '../../src/lib/engine/payload.js'
import {EntryType} from '../../src/lib/engine/record.js'
import {ensureSpaceDirs, WalWriter} from '../../src/lib/engine/writer.js'
import {ExitCode, LockedError} from '../../src/lib/errors.js'
import type {ObjectWriter, PutOptions} from '../../src/lib/repo/backend.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {acquireRepoLock} from '../../src/lib/repo/lock.js'
import {type Manifest, sealManifest} from '../../src/lib/repo/manifest.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {runRestore} from '../../src/lib/restore/restore.js'
import {runPrune} from '../../src/lib/retention/prune.js'
import type {RetentionPolicy} from '../../src/lib/retention/policy.js'
import type {Reporter} from '../../src/lib/ui/reporter.js'
import {repoRoot} from '../support/fixtures.js'
import {filesUnder} from '../support/files.js'
import {runCli} from '../support/cli.js'

const NONE: RetentionPolicy = {keepLast: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, keepWithinMs: 0, minFull: 0}
/** Newest backup of the last day (with its chain), and the two newest fulls. */
const POLICY: RetentionPolicy = {...NONE, keepDaily: 1, minFull: 2}

function recorder(): Reporter & {infos: string[]} {
  const r = {
    warnings: [] as string[],
    infos: [] as string[],
    info(m: string) {
      r.infos.push(m)
    },
    warn(m: string) {
      r.warnings.push(m)
    },
    progress() {},
  }
  return r
}

/** An FsBackend that records deletions, and can slow down archive uploads. */
class RecordingFs extends FsBackend {
  deletes: string[] = []
  slowArchivesMs = 0
  override async delete(keys: readonly string[]): Promise<void> {
    this.deletes.push(...keys)
    return super.delete(keys)
  }

  // Archives are written through openWriter (FsBackend has one), not put.
  override async openWriter(key: string, options?: PutOptions): Promise<ObjectWriter> {
    if (this.slowArchivesMs > 0 && /\.tar(\.zst)?$/.test(key)) await sleep(this.slowArchivesMs)
    return super.openWriter(key, options)
  }
}


const rng = new Prng(4242)
let seq = 0
async function appendRecords(data: string, space: string, n: number): Promise<void> {
  await ensureSpaceDirs(join(data, space))
  const w = await WalWriter.open(join(data, space, 'wal'), {createdAtSecs: 0x65000000, firstSequence: BigInt(seq), fsync: false})
  const ts = nowNs()
  await w.append(Array.from({length: n}, (_, i) => ({entryType: EntryType.EpisodeStore, payload: encodeEpisode(makeEpisode(rng, `ep-${seq++}`, ts + BigInt(i))), timestampNs: ts + BigInt(i)})))
  await w.close()
}

let tmp: string
beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'backup', 'prune.js'))) throw new Error('dist/ is not built')
  tmp = await mkdtemp(join(tmpdir(), 'engram-prune-'))
})
afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

interface Built {
  dir: string
  data: string
  backend: RecordingFs
  repo: Repository
  /** Backups by name: F1 I1 I2 F2 I3 F3 I4 (F = full, I = incremental of the full before it). */
  b: Record<string, Manifest>
  failed: string
}

let n = 0
/**
 * A repository with seven real backups of a two-space data directory, their start times rewritten
 * (and manifests re-sealed) to spread them over three days, and the objects of a failed backup
 * (archives, no manifest).
 */
async function build(): Promise<Built> {
  const dir = join(tmp, `repo-${n}`)
  const data = join(tmp, `data-${n++}`)
  const backend = new RecordingFs(dir)
  const repo = await Repository.init(backend, {codec: 'zstd', level: 1})
  const plan: Array<[string, 'full' | 'incremental', string]> = [
    ['F1', 'full', '2026-01-01T00:00:00.000Z'],
    ['I1', 'incremental', '2026-01-01T06:00:00.000Z'],
    ['I2', 'incremental', '2026-01-01T12:00:00.000Z'],
    ['F2', 'full', '2026-01-02T00:00:00.000Z'],
    ['I3', 'incremental', '2026-01-02T06:00:00.000Z'],
    ['F3', 'full', '2026-01-03T00:00:00.000Z'],
    ['I4', 'incremental', '2026-01-03T06:00:00.000Z'],
  ]
  const b: Record<string, Manifest> = {}
  for (const [name, type, startedAt] of plan) {
    await appendRecords(data, 'alpha', 2)
    if (name !== 'I1') await appendRecords(data, 'bravo', 1)
    const r = await runBackup({repo, dataDir: data, type, spaces: [], compression: {codec: 'zstd', level: 1}, lockWaitMs: 0, reporter: recorder()})
    expect(r.type).toBe(type)
    const {checksum: _, ...m} = await repo.manifest(r.id)
    const sealed = sealManifest({...m, startedAt, finishedAt: new Date(Date.parse(startedAt) + 1000).toISOString()})
    await repo.writeManifest(sealed)
    b[name] = sealed
  }
  expect(b.I2.chain).toEqual([b.F1.id, b.I1.id, b.I2.id])
  expect(b.I4.chain).toEqual([b.F3.id, b.I4.id])
  // Verification records belong to their backup and go with it.
  await repo.recordVerification(b.I1.id, {level: 2, ok: true, at: '2026-01-01T07:00:00.000Z', detail: ''})
  // A backup that crashed before its manifest: archives only.
  const failed = '20260104T000000Z-full-dead00'
  await backend.put(`backups/${failed}/alpha.tar.zst`, Buffer.from('partial archive'))
  await backend.put(`backups/${failed}/bravo.tar.zst`, Buffer.from('partial'))
  backend.deletes = []
  return {dir, data, backend, repo, b, failed}
}

const objectsOf = (files: string[], id: string) => files.filter((f) => f.startsWith(`backups/${id}/`))

const cli = runCli

describe('runPrune on a real repository', () => {
  it('plans by default and changes nothing; --yes deletes exactly the plan, manifest first, and failed backups; a second run deletes nothing; chains and min-full', async () => {
    const {dir, backend, repo, b, failed} = await build()
    const before = await filesUnder(dir)
    expect(objectsOf(before, b.I1.id)).toEqual([`backups/${b.I1.id}/alpha.tar.zst`, `backups/${b.I1.id}/manifest.json`, `backups/${b.I1.id}/verification.json`])
    expect(objectsOf(before, failed)).toEqual([`backups/${failed}/alpha.tar.zst`, `backups/${failed}/bravo.tar.zst`])

    // Keep: I4 (newest of the last day) with its full F3; F2 (min-full 2). Delete I3, I2, I1, F1.
    const plan = await runPrune(repo, POLICY, {apply: false, lockWaitMs: 0, reporter: recorder()})
    expect(plan.dryRun).toBe(true)
    expect(plan.decisions.map((d) => [d.id, d.keep])).toEqual([
      [b.I4.id, true],
      [b.F3.id, true],
      [b.I3.id, false],
      [b.F2.id, true],
      [b.I2.id, false],
      [b.I1.id, false],
      [b.F1.id, false],
    ])
    expect(plan.decisions.find((d) => d.id === b.F2.id)!.reasons).toEqual(['min-full'])
    expect(plan.deleted).toEqual([b.I3.id, b.I2.id, b.I1.id, b.F1.id])
    expect(plan.incomplete).toEqual([failed])
    expect(plan.kept).toBe(3)
    const sizes = await Promise.all([...plan.deleted, failed].map(async (id) => {
      let total = 0
      for await (const o of backend.list(`backups/${id}/`)) total += o.size
      return total
    }))
    expect(plan.freedBytes).toBe(sizes.reduce((a, x) => a + x, 0))
    expect(plan.brokenLocks).toEqual([])

    // Other policies on the same repository: a kept incremental keeps its whole chain; min-full
    // keeps fulls no rule wants (but not their incrementals).
    const last = await runPrune(repo, {...NONE, keepLast: 1, minFull: 3}, {apply: false, lockWaitMs: 0, reporter: recorder()})
    expect(last.decisions.filter((d) => d.keep).map((d) => d.id)).toEqual([b.I4.id, b.F3.id, b.F2.id, b.F1.id])
    expect(last.deleted).toEqual([b.I3.id, b.I2.id, b.I1.id])
    // keep-within 25 h of the newest (I4, Jan 3 06:00) reaches F3 and I3 (Jan 2 06:00), and I3 needs F2.
    const within = await runPrune(repo, {...NONE, keepWithinMs: 25 * 3_600_000}, {apply: false, lockWaitMs: 0, reporter: recorder()})
    expect(within.decisions.filter((d) => d.keep).map((d) => d.id)).toEqual([b.I4.id, b.F3.id, b.I3.id, b.F2.id])
    expect(within.decisions.find((d) => d.id === b.F2.id)!.reasons).toEqual([`needed by ${b.I3.id}`])

    expect(await filesUnder(dir)).toEqual(before)
    expect(backend.deletes).toEqual([]) // dry runs take no lock either

    const reporter = recorder()
    const done = await runPrune(repo, POLICY, {apply: true, lockWaitMs: 0, reporter})
    expect(done.dryRun).toBe(false)
    expect(done.deleted).toEqual(plan.deleted)
    expect(done.incomplete).toEqual([failed])
    const doomed = new Set([...plan.deleted, failed])
    // Apart from its own lock, prune deleted only objects of doomed backups.
    expect(backend.deletes.filter((k) => !k.startsWith('backups/'))).toEqual(['locks/repository.lock'])
    expect(backend.deletes.filter((k) => k.startsWith('backups/') && ![...doomed].some((id) => k.startsWith(`backups/${id}/`)))).toEqual([])
    expect(await filesUnder(dir)).toEqual(before.filter((f) => ![...doomed].some((id) => f.startsWith(`backups/${id}/`))))
    // Every object of each deleted backup went, its manifest first.
    for (const id of plan.deleted) {
      const mine = backend.deletes.filter((k) => k.startsWith(`backups/${id}/`))
      expect(mine[0]).toBe(`backups/${id}/manifest.json`)
      expect(mine.slice(1).sort()).toEqual(objectsOf(before, id).filter((k) => !k.endsWith('manifest.json')))
    }
    expect(backend.deletes.filter((k) => k.startsWith(`backups/${failed}/`)).sort()).toEqual(objectsOf(before, failed))
    // Newest first: an incremental never outlives its full, even if prune is killed half-way.
    const order = plan.deleted.map((id) => backend.deletes.indexOf(`backups/${id}/manifest.json`))
    expect(order).toEqual([...order].sort((x, y) => x - y))
    expect(reporter.infos).toEqual([...plan.deleted.map((id) => `deleted backup ${id}`), `deleted the objects of incomplete backup ${failed}`])
    expect(done.brokenLocks).toEqual([])
    expect(await repo.completeBackups()).toEqual([b.F2, b.F3, b.I4])
    expect(existsSync(join(dir, 'locks', 'repository.lock'))).toBe(false)

    // What is left restores.
    const restored = await runRestore(repo, {id: b.I4.id, spaces: [], to: join(dir, '..', `restored-${n}`), yes: false, dryRun: false, reporter: recorder()})
    expect(restored.chain.map((c) => c.id)).toEqual([b.F3.id, b.I4.id])

    // Idempotent.
    backend.deletes = []
    const again = await runPrune(repo, POLICY, {apply: true, lockWaitMs: 0, reporter: recorder()})
    expect(again.deleted).toEqual([])
    expect(again.incomplete).toEqual([])
    expect(again.freedBytes).toBe(0)
    expect(again.decisions.map((d) => [d.id, d.keep])).toEqual([
      [b.I4.id, true],
      [b.F3.id, true],
      [b.F2.id, true],
    ])
    expect(backend.deletes).toEqual(['locks/repository.lock']) // only its own lock
  })

  it('waits for a repository lock held by a backup, then proceeds; exits 12 when the wait is too short', async () => {
    const {dir, repo, b, failed} = await build()
    const backupsUnder = async () => (await filesUnder(dir)).filter((f) => !f.startsWith('locks/'))
    const before = await backupsUnder()
    const holder = await acquireRepoLock(new FsBackend(dir), {command: 'backup full', waitMs: 0})
    try {
      const started = Date.now()
      const error = await runPrune(repo, POLICY, {apply: true, lockWaitMs: 600, reporter: recorder()}).then(
        () => null,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(LockedError)
      expect((error as LockedError).exitCode).toBe(ExitCode.locked)
      expect((error as LockedError).message).toContain(`is locked by backup full (pid ${process.pid} on ${holder.owner.host}`)
      expect(Date.now() - started).toBeGreaterThanOrEqual(550)
      expect(await backupsUnder()).toEqual(before)
    } catch (error) {
      await holder.release()
      throw error
    }
    // Released while prune waits: it proceeds.
    const reporter = recorder()
    const started = Date.now()
    const pending = runPrune(repo, POLICY, {apply: true, lockWaitMs: 20_000, reporter})
    await sleep(800)
    expect(await backupsUnder()).toEqual(before) // still waiting, nothing deleted
    await holder.release()
    const done = await pending
    expect(Date.now() - started).toBeGreaterThanOrEqual(750)
    expect(reporter.infos[0]).toBe(`repository is locked by backup full (pid ${process.pid}); waiting`)
    expect(done.deleted).toEqual([b.I3.id, b.I2.id, b.I1.id, b.F1.id])
    expect(done.incomplete).toEqual([failed])
    expect(objectsOf(await filesUnder(dir), b.F1.id)).toEqual([])
  })

  it('running beside a real backup never deletes the objects of the backup in progress', async () => {
    const {dir, data, backend, repo, b} = await build()
    await appendRecords(data, 'alpha', 3)
    // The backup uploads slowly: its archives exist without a manifest for a while.
    backend.slowArchivesMs = 400
    const backup = runBackup({repo, dataDir: data, type: 'full', spaces: [], compression: {codec: 'zstd', level: 1}, lockWaitMs: 0, reporter: recorder()})
    await sleep(150)
    const pruneRepo = await Repository.open(new FsBackend(dir))
    const pruneReporter = recorder()
    const prune = runPrune(pruneRepo, POLICY, {apply: true, lockWaitMs: 30_000, reporter: pruneReporter})
    const [made, pruned] = await Promise.all([backup, prune])
    expect(pruneReporter.infos[0]).toBe(`repository is locked by backup full (pid ${process.pid}); waiting`)
    // The new full is the newest backup (today): kept by keep-daily and min-full, with F3 (min-full).
    expect(pruned.decisions.filter((d) => d.keep).map((d) => d.id)).toEqual([made.id, b.F3.id])
    expect(pruned.deleted).toEqual([b.I4.id, b.I3.id, b.F2.id, b.I2.id, b.I1.id, b.F1.id])
    expect((await repo.completeBackups()).map((m) => m.id)).toEqual([b.F3.id, made.id])
    const restored = await runRestore(repo, {id: made.id, spaces: [], to: join(tmp, `beside-${n}`), yes: false, dryRun: false, reporter: recorder()})
    expect(restored.spaces).toEqual(['alpha', 'bravo'])
  })
})

describe('backup prune (CLI)', () => {
  const policy = ['--keep-daily', '1', '--keep-weekly', '0', '--keep-monthly', '0', '--min-full', '2']

  it('without --yes exits 0, lists the plan and changes nothing; with --yes deletes it', async () => {
    const {dir, b, failed} = await build()
    const before = await filesUnder(dir)
    const [dry, json] = await Promise.all([cli(['backup', 'prune', '--repo', dir, ...policy]), cli(['backup', 'prune', '--repo', dir, ...policy, '--json'])])
    expect(dry.code).toBe(0)
    expect(await filesUnder(dir)).toEqual(before)
    const rows = dry.stdout.split('\n')
    for (const [name, decision] of [
      ['I4', 'keep'],
      ['F3', 'keep'],
      ['I3', 'would delete'],
      ['F2', 'keep'],
      ['I2', 'would delete'],
      ['I1', 'would delete'],
      ['F1', 'would delete'],
    ]) {
      expect(rows.some((r) => r.includes(b[name].id) && r.includes(decision)), `${name} ${decision}`).toBe(true)
    }
    expect(dry.stdout).toContain('3 kept, would delete 4 backups and 1 incomplete ones')
    expect(dry.stdout).toContain('pass --yes to apply')

    expect(json.code).toBe(0)
    const doc = JSON.parse(json.stdout)
    expect(doc.dryRun).toBe(true)
    expect(doc.deleted).toEqual([b.I3.id, b.I2.id, b.I1.id, b.F1.id])
    expect(doc.incomplete).toEqual([failed])
    expect(await filesUnder(dir)).toEqual(before)

    const yes = await cli(['backup', 'prune', '--repo', dir, ...policy, '--yes', '--json'])
    expect(yes.code).toBe(0)
    expect(JSON.parse(yes.stdout).deleted).toEqual([b.I3.id, b.I2.id, b.I1.id, b.F1.id])
    const doomed = [b.I3.id, b.I2.id, b.I1.id, b.F1.id, failed]
    expect(await filesUnder(dir)).toEqual(before.filter((f) => !doomed.some((id) => f.startsWith(`backups/${id}/`))))

    const again = await cli(['backup', 'prune', '--repo', dir, ...policy, '--yes'])
    expect(again.code).toBe(0)
    expect(again.stdout).toContain('3 kept, deleted 0 backups and 0 incomplete ones')
  })
})
