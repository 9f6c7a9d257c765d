/**
 * The backup main path on S3, end to end through the BUILT CLI against s3rver: repo init → backup
 * full (a ~17 MiB space goes multipart with partSize=5MiB, a small one is a single PUT) → append →
 * backup incremental → restore (byte-identical) → PITR (byte-identical prefixes) → verify L1–L4 →
 * prune. The CLI runs in child processes (async spawn: s3rver serves from this process's event loop)
 * with its own empty TMPDIR, watched while it backs up: the archives stream to S3 with no local file.
 */
import {watch, type FSWatcher} from 'node:fs'
import {mkdir, mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {formatRfc3339} from '../../src/lib/engine/datetime.js'
import {generateData, type GenerateResult} from '../../src/lib/engine/generate.js'
import {WalFileReader} from '../../src/lib/engine/reader.js'
import {S3Backend} from '../../src/lib/repo/backends/s3.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {runCli, type S3rverHandle, startS3rver} from '../support/s3.js'
import {fileContents} from '../support/files.js'
import {sha256 as sha} from '../support/fixtures.js'

const MS = 1_000_000n
const MiB = 1024 * 1024
const PART = 5 * MiB
const nowNs = () => BigInt(Date.now()) * MS

const files = fileContents

const digest = (m: Map<string, Buffer>) => Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, `${v.length}:${sha(v)}`]))

/* eslint-disable @typescript-eslint/no-explicit-any */
// Each step runs the CLI a few times; on a loaded machine that takes a while.
describe('S3 end to end through the built CLI (s3rver, partSize=5MiB)', {timeout: 180_000}, () => {
  let s3: S3rverHandle
  let root: string
  let data: string
  let childTmp: string
  let url: string
  let gen1: GenerateResult[]
  let gen2: GenerateResult
  let sizesAfterGen1: Map<string, number>
  let appendStart: bigint
  let full: any
  let inc: any
  const env = () => ({TMPDIR: childTmp, TMP: childTmp, TEMP: childTmp})

  async function json(args: string[], code = 0): Promise<any> {
    const r = await runCli([...args, '--json'], {env: env()})
    expect(r.code, `${args.join(' ')} → ${r.code}\n${r.stdout}\n${r.stderr}`).toBe(code)
    return JSON.parse(r.stdout)
  }

  /** Runs a backup while watching the child's TMPDIR: nothing may appear there, even briefly. */
  async function backupWatchingTmp(type: 'full' | 'incremental'): Promise<any> {
    const events: string[] = []
    const w: FSWatcher = watch(childTmp, (ev, name) => events.push(`${ev} ${name}`))
    try {
      const out = await json(['backup', type, '--data-dir', data, '--repo', url])
      await new Promise((r) => setTimeout(r, 100)) // let late inotify events arrive
      expect(events, 'the backup created temporary files').toEqual([])
      expect(await readdir(childTmp)).toEqual([])
      return out
    } finally {
      w.close()
    }
  }

  beforeAll(async () => {
    s3 = await startS3rver()
    root = await mkdtemp(join(tmpdir(), 'engram-s3-e2e-'))
    data = join(root, 'data')
    childTmp = join(root, 'child-tmp')
    await mkdir(childTmp)
    url = s3.url('e2e/repo', {partSize: '5MiB', queueSize: 2})
    // ~17 MiB in "default" (multipart: four 5 MiB parts at most), ~1 MiB in "tenant-a" (one PUT),
    // all stamped three to two hours ago.
    const start = nowNs() - 3n * 3600_000n * MS
    gen1 = [
      await generateData({root: data, spaces: ['default'], episodes: 0, bytesPerSpace: 16 * MiB, seed: 11, startNs: start, windowNs: 3600_000n * MS, fsync: false}),
      await generateData({root: data, spaces: ['tenant-a'], episodes: 0, bytesPerSpace: MiB, seed: 12, startNs: start, windowNs: 3600_000n * MS, fsync: false}),
    ]
    sizesAfterGen1 = new Map([...(await files(data))].map(([k, v]) => [k, v.length]))
  })
  afterAll(async () => {
    await rm(root, {recursive: true, force: true})
    await s3?.close()
  })

  it('repo init, then backup full: the big archive goes multipart, the small one is one PUT, no temporary file', async () => {
    const init = await json(['repo', 'init', '--repo', url])
    expect(init.repo).toBe(`s3://bk/e2e/repo/?endpoint=${s3.endpoint}&region=us-east-1`)
    expect(init.config).toMatchObject({format: 'engram-ops-repo/1', compression: {codec: 'zstd', level: 1}})
    expect(init.config.encryption).toBeUndefined()

    s3.resetCounts()
    full = await backupWatchingTmp('full')
    const records = gen1.reduce((a, g) => a + g.episodes, 0)
    expect(full).toMatchObject({type: 'full', parent: null, totals: {files: 2, records, bytes: gen1.reduce((a, g) => a + g.bytes, 0)}, damage: []})
    const big = full.spaces.find((s: any) => s.space === 'default')
    const small = full.spaces.find((s: any) => s.space === 'tenant-a')
    expect(big.archiveBytes).toBeGreaterThan(2 * PART)
    expect(small.archiveBytes).toBeLessThan(PART)
    const kindsFor = (key: string) => s3.log.filter((r) => r.key === key && r.kind !== 'HeadObject' && r.kind !== 'GetObject').map((r) => r.kind)
    const parts = Math.ceil(big.archiveBytes / PART)
    expect(kindsFor(`e2e/repo/backups/${full.id}/default.tar.zst`)).toEqual(['CreateMultipartUpload', ...Array(parts).fill('UploadPart'), 'CompleteMultipartUpload'])
    expect(kindsFor(`e2e/repo/backups/${full.id}/tenant-a.tar.zst`)).toEqual(['PutObject'])
    expect(await s3.openUploads()).toEqual([])

    // What is in the bucket: the config, this backup's two archives and its manifest; the lock is gone.
    const raw = S3Backend.fromUrl(url)
    const keys: Array<{key: string; size: number}> = []
    for await (const o of raw.list('')) keys.push({key: o.key, size: o.size})
    await raw.close()
    expect(keys.map((k) => k.key)).toEqual([
      `backups/${full.id}/default.tar.zst`,
      `backups/${full.id}/manifest.json`,
      `backups/${full.id}/tenant-a.tar.zst`,
      'engram-ops-repo.json',
    ])
    expect(keys[0].size).toBe(big.archiveBytes)
    expect(keys[2].size).toBe(small.archiveBytes)
  })

  it('append, then backup incremental: only the appended bytes, still no temporary file', async () => {
    appendStart = nowNs()
    gen2 = await generateData({root: data, spaces: ['default', 'tenant-a'], episodes: 150, seed: 7, startNs: appendStart, windowNs: 2000n * MS, append: true, fsync: false})
    expect(gen2.spaces.map((s) => s.file)).toEqual(gen1.map((g) => g.spaces[0].file))
    while (nowNs() < appendStart + 2500n * MS) await new Promise((r) => setTimeout(r, 50))
    inc = await backupWatchingTmp('incremental')
    expect(inc).toMatchObject({type: 'incremental', requestedType: 'incremental', parent: full.id, compaction: null, totals: {files: 2, records: 300, bytes: gen2.bytes}})
    expect(inc.spaces.map((s: any) => [s.space, s.bytes, s.records])).toEqual(gen2.spaces.map((s) => [s.space, s.bytes, 150]))
    expect(await s3.openUploads()).toEqual([])
    const list = await json(['backup', 'list', '--repo', url])
    expect(list.backups.map((b: any) => [b.id, b.type, b.parent])).toEqual([
      [full.id, 'full', null],
      [inc.id, 'incremental', full.id],
    ])
    expect(list.incomplete).toEqual([])
  })

  it('restore --latest is byte-identical to the data directory', async () => {
    const to = join(root, 'restored')
    const r = await json(['restore', '--latest', '--repo', url, '--to', to])
    expect(r).toMatchObject({backup: inc.id, chain: [{id: full.id}, {id: inc.id}], dryRun: false})
    const want = await files(data)
    const got = await files(to)
    expect([...got.keys()].sort()).toEqual(['default/wal/' + gen1[0].spaces[0].file, 'tenant-a/wal/' + gen1[1].spaces[0].file])
    expect(digest(got)).toEqual(digest(new Map([...want].filter(([k]) => got.has(k)))))
    expect(r.restoredBytes).toBe([...want.values()].reduce((a, b) => a + b.length, 0))
    // A non-empty target is refused without --yes (usage, exit 2), and left alone.
    const again = await runCli(['restore', '--latest', '--repo', url, '--to', to, '--json'], {env: env()})
    expect(again.code).toBe(2)
    expect(digest(await files(to))).toEqual(digest(got))
  })

  it('restore pitr: before the append gives the full backup state; mid-append gives exactly the records up to the target', async () => {
    // 1 ms before the appended records: every WAL file as it was when the full backup ran.
    const before = join(root, 'pitr-before')
    const r1 = await json(['restore', 'pitr', '--target-time', formatRfc3339(appendStart - MS), '--repo', url, '--to', before])
    expect(r1.pitrResult).toEqual({kept: gen1.reduce((a, g) => a + g.episodes, 0), dropped: 300})
    const now = await files(data)
    const got1 = await files(before)
    expect(digest(got1)).toEqual(digest(new Map([...got1.keys()].map((k) => [k, now.get(k)!.subarray(0, sizesAfterGen1.get(k))]))))

    // At the 50th appended record of "default": every record stamped at or before it, in both spaces.
    const target = await (async () => {
      const path = join(data, 'default', 'wal', gen1[0].spaces[0].file)
      let n = 0
      for await (const rec of new WalFileReader(path).records()) if (rec.header.timestampNs >= appendStart && ++n === 50) return rec.header.timestampNs
      throw new Error('no 50th appended record')
    })()
    const expected = new Map<string, Buffer>()
    let kept = 0
    for (const [k, bytes] of now) {
      let end = 0
      for await (const rec of new WalFileReader(join(data, k)).records()) {
        if (rec.header.timestampNs > target) break
        end = rec.offset + rec.recordSize
        kept++
      }
      expected.set(k, bytes.subarray(0, end))
    }
    const mid = join(root, 'pitr-mid')
    const r2 = await json(['restore', 'pitr', '--target-time', formatRfc3339(target), '--repo', url, '--to', mid])
    expect(r2.pitrResult.kept).toBe(kept)
    expect(digest(await files(mid))).toEqual(digest(expected))
    expect(expected.get(`default/wal/${gen1[0].spaces[0].file}`)!.length).toBeGreaterThan(sizesAfterGen1.get(`default/wal/${gen1[0].spaces[0].file}`)!)

    // Before the first backed-up record: no backup reaches it (exit 16).
    const tooEarly = await runCli(['restore', 'pitr', '--target-time', '2001-01-01T00:00:00Z', '--repo', url, '--to', join(root, 'pitr-early'), '--json'], {env: env()})
    expect(tooEarly.code, tooEarly.stdout).toBe(16)
  })

  it('backup verify --latest passes at levels 1, 2, 3 and 4', async () => {
    for (const level of [1, 2, 3, 4]) {
      const v = await json(['backup', 'verify', '--latest', '--level', String(level), '--repo', url])
      expect(v.ok).toBe(true)
      expect(v.results).toHaveLength(1)
      expect(v.results[0]).toMatchObject({backup: inc.id, level, ok: true, findings: [], checked: {manifests: 2, objects: 4}})
      if (level >= 3) expect(v.results[0].checked.records).toBe(gen1.reduce((a, g) => a + g.episodes, 0) + 300)
    }
    const repo = await Repository.open(S3Backend.fromUrl(url))
    expect(await repo.lastVerification(inc.id)).toMatchObject({level: 4, ok: true, detail: ''})
    await repo.backend.close()
  })

  it('backup prune: plans without --yes; with --yes deletes the old chain from the bucket; the newest full still restores', async () => {
    const full2 = await json(['backup', 'full', '--data-dir', data, '--repo', url])
    const policy = ['--keep-last', '1', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0', '--min-full', '1']
    const plan = await json(['backup', 'prune', '--repo', url, ...policy])
    expect(plan).toMatchObject({dryRun: true, kept: 1, incomplete: []})
    expect([...plan.deleted].sort()).toEqual([full.id, inc.id])
    const keysOf = async () => {
      const raw = S3Backend.fromUrl(url)
      const keys: string[] = []
      for await (const o of raw.list('backups/')) keys.push(o.key)
      await raw.close()
      return keys
    }
    expect((await keysOf()).filter((k) => k.startsWith(`backups/${full.id}/`))).toHaveLength(3)

    const done = await json(['backup', 'prune', '--repo', url, ...policy, '--yes'])
    expect(done).toMatchObject({dryRun: false, kept: 1, incomplete: []})
    expect([...done.deleted].sort()).toEqual([full.id, inc.id])
    expect(done.freedBytes).toBeGreaterThan(3 * PART)
    expect(await keysOf()).toEqual([`backups/${full2.id}/default.tar.zst`, `backups/${full2.id}/manifest.json`, `backups/${full2.id}/tenant-a.tar.zst`])
    const repo = await Repository.open(S3Backend.fromUrl(url))
    expect((await repo.completeBackups()).map((m) => m.id)).toEqual([full2.id])
    await repo.backend.close()

    const to = join(root, 'restored-after-prune')
    await json(['restore', '--latest', '--repo', url, '--to', to])
    const want = await files(data)
    const got = await files(to)
    expect(digest(got)).toEqual(digest(new Map([...got.keys()].map((k) => [k, want.get(k)!]))))
    expect(got.size).toBe(2)
    expect(await s3.openUploads()).toEqual([])
    expect(await readdir(childTmp)).toEqual([])
  })
})
