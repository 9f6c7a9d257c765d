/**
 * The backup main path as a user runs it: the BUILT CLI (bin/run.js over dist/) in child processes,
 * from `engine generate` to a point-in-time restore, checked against the data directory's own records.
 */
import {existsSync} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {formatRfc3339} from '../../src/lib/engine/datetime.js'
import {listWalFiles} from '../../src/lib/engine/layout.js'
import {WalFileReader} from '../../src/lib/engine/reader.js'
import {filesUnder} from '../support/files.js'
import {repoRoot} from '../support/fixtures.js'
import {runCli} from '../support/cli.js'

const MS = 1_000_000n

const run = runCli

/** Runs with --json and expects `code`; returns the parsed stdout. */
async function json(args: string[], code = 0): Promise<any> {
  const r = await run([...args, '--json'])
  expect(r.code, `${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(code)
  return JSON.parse(r.stdout)
}

const nowNs = () => BigInt(Date.now()) * MS

/** Every record of every WAL file of a data dir: space → file → [{ts, bytes}] (as WalFileReader sees them). */
async function walRecords(root: string, spaces: string[]): Promise<Map<string, Map<string, Array<{ts: bigint; bytes: Buffer}>>>> {
  const out = new Map<string, Map<string, Array<{ts: bigint; bytes: Buffer}>>>()
  for (const sp of spaces) {
    const files = new Map<string, Array<{ts: bigint; bytes: Buffer}>>()
    for (const f of await listWalFiles(join(root, sp, 'wal'))) {
      const data = await readFile(f.path)
      const reader = new WalFileReader(f.path)
      const recs: Array<{ts: bigint; bytes: Buffer}> = []
      for await (const r of reader.records()) recs.push({ts: r.header.timestampNs, bytes: Buffer.from(data.subarray(r.offset, r.offset + r.recordSize))})
      expect(reader.end!.kind).toBe('eof')
      files.set(f.name, recs)
    }
    out.set(sp, files)
  }
  return out
}

/* eslint-disable @typescript-eslint/no-explicit-any */
describe('backup main path (built CLI), step by step', {timeout: 180_000}, () => {
  let root: string
  let data: string
  let repo: string
  const spaces = ['default', 'tenant-001']
  let gen2: any
  let full: any
  let inc: any
  let show: any
  let appendStart: bigint
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'engram-e2e-backup-'))
    data = join(root, 'data')
    repo = join(root, 'repo')
  })
  afterAll(async () => {
    await rm(root, {recursive: true, force: true})
  })

  it('engine generate → repo init → backup full → generate --append → backup incremental (only the appended bytes)', async () => {
    // Data from three hours ago, spread over one hour: all of it before the full backup.
    const gen1 = await json(['engine', 'generate', '--data-dir', data, '--spaces', '2', '--episodes', '150', '--start', formatRfc3339(nowNs() - 3n * 3600_000n * MS), '--window', '1h'])
    expect(gen1).toMatchObject({episodes: 300, spaces: [{space: 'default', episodes: 150}, {space: 'tenant-001', episodes: 150}]})

    const init = await json(['repo', 'init', '--repo', repo])
    expect(init).toMatchObject({repo: `file://${repo}`, config: {format: 'engram-ops-repo/1', compression: {codec: 'zstd', level: 1}}})

    full = await json(['backup', 'full', '--data-dir', data, '--repo', repo])
    expect(full).toMatchObject({type: 'full', requestedType: 'full', parent: null, note: null, totals: {files: 2, records: 300, unlinkedFiles: 0}})
    expect(full.id).toMatch(/^\d{8}T\d{6}Z-full-[0-9a-f]{6}$/)

    // Records stamped after the full backup's snapshot, over two seconds, then the incremental.
    appendStart = nowNs()
    gen2 = await json(['engine', 'generate', '--data-dir', data, '--spaces', '2', '--episodes', '60', '--append', '--start', formatRfc3339(appendStart), '--window', '2s', '--seed', '7'])
    expect(gen2.spaces.map((s: {file: string}) => s.file)).toEqual(gen1.spaces.map((s: {file: string}) => s.file))
    while (nowNs() < appendStart + 2500n * MS) await new Promise((r) => setTimeout(r, 50))
    inc = await json(['backup', 'incremental', '--data-dir', data, '--repo', repo])
    expect(inc).toMatchObject({type: 'incremental', requestedType: 'incremental', parent: full.id, note: null, compaction: null, totals: {files: 2, records: 120, bytes: gen2.bytes}})
    expect(inc.id).toMatch(/^\d{8}T\d{6}Z-incr-[0-9a-f]{6}$/)
    expect(inc.spaces).toEqual(
      gen2.spaces.map((s: {space: string; bytes: number}) => ({space: s.space, files: 1, bytes: s.bytes, archiveBytes: expect.any(Number), records: 60, gone: 0, rewritten: 0})),
    )
  })

  it('backup list --json: exactly these rows, oldest first, the incremental linked to its full', async () => {
    const row = (b: typeof full, type: string, parent: string | null, records: number) => ({
      id: b.id,
      type,
      parent,
      spaces,
      startedAt: b.startedAt,
      finishedAt: b.finishedAt,
      records,
      bytes: b.totals.bytes,
      storedBytes: b.totals.archiveBytes,
      label: null,
      lastVerification: null,
    })
    const list = await json(['backup', 'list', '--repo', repo])
    expect(list).toStrictEqual({backups: [row(full, 'full', null, 300), row(inc, 'incremental', full.id, 120)], incomplete: [], warnings: []})
  })

  it('backup show: the manifest and its chain', async () => {
    show = await json(['backup', 'show', inc.id, '--repo', repo])
    expect(Object.keys(show).sort()).toEqual(['chain', 'manifest', 'warnings'])
    expect(show.chain).toEqual([full.id, inc.id])
    expect(show.manifest).toMatchObject({format: 'engram-ops-backup/2', hashAlgorithm: 'blake3', id: inc.id, type: 'incremental', parent: full.id, chain: [full.id, inc.id], dataRoot: data, compaction: null})
    expect(show.manifest.spaces.map((s: {space: string; files: Array<{offset: number; length: number}>}) => [s.space, s.files.map((f) => f.length)])).toEqual(
      gen2.spaces.map((s: {space: string; bytes: number}) => [s.space, [s.bytes]]),
    )
    const showText = await run(['backup', 'show', inc.id, '--repo', repo])
    expect(showText.code).toBe(0)
    expect(showText.stdout).toContain(`backup ${inc.id} (incremental)\n  chain: ${full.id} -> ${inc.id}\n`)
  })

  it('backup verify --latest --level 4 passes and backup list records it', async () => {
    const verify = await json(['backup', 'verify', '--latest', '--level', '4', '--repo', repo])
    expect(verify).toMatchObject({
      ok: true,
      results: [{backup: inc.id, level: 4, ok: true, findings: [], checked: {manifests: 2, objects: 4, records: 420, memories: 420}}],
    })
    expect(verify.results).toHaveLength(1)
    expect(verify.results[0].checked.samples).toBeGreaterThan(0)
    const listed = await json(['backup', 'list', '--repo', repo])
    expect(listed.backups[1].lastVerification).toEqual({level: 4, ok: true, at: expect.any(String), detail: ''})
    expect(listed.backups[0].lastVerification).toBeNull()
  })

  it('restore --latest: engine stats of the restored dir equal those of the data dir', async () => {
    const restored = join(root, 'restored')
    const r = await json(['restore', '--latest', '--repo', repo, '--to', restored])
    expect(r).toMatchObject({dryRun: false, backup: inc.id, chain: [{id: full.id, type: 'full'}, {id: inc.id, type: 'incremental'}], targetState: 'missing', replacedMovedTo: null, synced: true, spaces})
    expect(r.restoredBytes).toBe(full.totals.bytes + inc.totals.bytes)
    const pick = (s: {space: string; files: unknown; bytes: number; records: number; recordsByType: unknown; memories: number; damage: unknown}) => ({
      space: s.space,
      files: s.files,
      bytes: s.bytes,
      records: s.records,
      recordsByType: s.recordsByType,
      memories: s.memories,
      damage: s.damage,
    })
    const statsData = await json(['engine', 'stats', data])
    const statsRestored = await json(['engine', 'stats', restored])
    expect(statsRestored.spaces.map(pick)).toEqual(statsData.spaces.map(pick))
    expect(statsRestored.spaces.map((s: {space: string; records: number; memories: number}) => [s.space, s.records, s.memories])).toEqual([
      ['default', 210, 210],
      ['tenant-001', 210, 210],
    ])
    expect(statsRestored.totals).toEqual(statsData.totals)
  })

  it('restore pitr to a time between the two backups keeps exactly the records stamped at or before it', async () => {
    const target = appendStart + 1000n * MS
    const pitrDir = join(root, 'pitr')
    const p = await json(['restore', 'pitr', '--target-time', formatRfc3339(target), '--repo', repo, '--to', pitrDir])
    expect(p).toMatchObject({backup: inc.id, pitr: {target: formatRfc3339(target), exclusive: false}})
    const all = await walRecords(data, spaces)
    const got = await walRecords(pitrDir, spaces)
    let kept = 0
    let dropped = 0
    for (const sp of spaces) {
      const expectedFiles = new Map([...all.get(sp)!].map(([name, recs]) => [name, recs.filter((x) => x.ts <= target)] as const).filter(([, recs]) => recs.length > 0))
      expect([...got.get(sp)!.keys()]).toEqual([...expectedFiles.keys()])
      for (const [name, recs] of expectedFiles) {
        kept += recs.length
        dropped += all.get(sp)!.get(name)!.length - recs.length
        expect(await readFile(join(pitrDir, sp, 'wal', name))).toEqual(Buffer.concat(recs.map((x) => x.bytes)))
      }
    }
    // The target really splits the appended records.
    expect(kept).toBeGreaterThan(300)
    expect(kept).toBeLessThan(420)
    expect(p.pitrResult).toEqual({kept, dropped})
  })

  it('restore pitr to a time after the last backup exits 16 and names the nearest recoverable point', async () => {
    const late = nowNs() + 3600_000n * MS
    const lateDir = join(root, 'late')
    const incManifest = show.manifest
    const err = (await json(['restore', 'pitr', '--target-time', formatRfc3339(late), '--repo', repo, '--to', lateDir], 16)).error
    const nearest = {ns: incManifest.snapshotNs, time: formatRfc3339(BigInt(incManifest.snapshotNs)), why: `snapshot of the last backup ${inc.id}`}
    expect(err).toMatchObject({code: 'PITR_TARGET_UNAVAILABLE', exitCode: 16, details: {nearest: [nearest]}})
    expect(err.message).toBe(`target ${formatRfc3339(late)} is after the last backup; nearest recoverable points: ${nearest.time} (${nearest.why})`)
    expect(existsSync(lateDir)).toBe(false)
    const lateText = await run(['restore', 'pitr', '--target-time', formatRfc3339(late), '--repo', repo, '--to', lateDir])
    expect(lateText.code).toBe(16)
    expect(lateText.stderr.replaceAll(/\s*\n\s*›\s*/g, ' ')).toContain(`nearest recoverable points: ${nearest.time} (${nearest.why})`)
  })

  it('a missing repository exits 11, for reading and writing commands alike', async () => {
    const missing = join(root, 'no-such-repo')
    for (const args of [
      ['backup', 'list', '--repo', missing],
      ['backup', 'full', '--data-dir', data, '--repo', missing],
      ['restore', '--latest', '--repo', missing, '--to', join(root, 'never')],
    ]) {
      const e = (await json(args, 11)).error
      expect(e).toMatchObject({code: 'REPO_MISSING', exitCode: 11, message: `no engram-ops repository at file://${missing}`})
    }
    expect(existsSync(missing)).toBe(false)
    expect(existsSync(join(root, 'never'))).toBe(false)
  })

  it('--space and --label, an incremental that falls back to a full, repo info, and prune through the CLI', async () => {
    const repo2 = join(root, 'repo-spaces')
    await json(['repo', 'init', '--repo', repo2])
    // One space, labelled: only that space is captured, and the label is in the manifest and the list.
    const one = await json(['backup', 'full', '--data-dir', data, '--repo', repo2, '--space', 'tenant-001', '--label', 'before upgrade'])
    expect(one.spaces.map((s: {space: string}) => s.space)).toEqual(['tenant-001'])
    expect(one.totals).toMatchObject({files: 1, records: 210})
    expect((await json(['backup', 'show', one.id, '--repo', repo2])).manifest).toMatchObject({label: 'before upgrade', spaces: [{space: 'tenant-001'}]})
    // An incremental of the same space has it as parent (nothing changed: no files).
    const oneInc = await json(['backup', 'incremental', '--data-dir', data, '--repo', repo2, '-s', 'tenant-001'])
    expect(oneInc).toMatchObject({type: 'incremental', parent: one.id, note: null, totals: {files: 0, bytes: 0}})
    // All spaces: no backup covers both, so a full one is taken, and it says so.
    const both = await json(['backup', 'incremental', '--data-dir', data, '--repo', repo2])
    const note = `no complete backup of ${data} covering spaces default, tenant-001: took a full backup instead`
    expect(both).toMatchObject({type: 'full', requestedType: 'incremental', parent: null, note, warnings: [note], totals: {files: 2, records: 420}})
    const list = await json(['backup', 'list', '--repo', repo2])
    expect(list.backups.map((b: {id: string; type: string; label: string | null; spaces: string[]}) => [b.id, b.type, b.label, b.spaces])).toEqual([
      [one.id, 'full', 'before upgrade', ['tenant-001']],
      [oneInc.id, 'incremental', null, ['tenant-001']],
      [both.id, 'full', null, spaces],
    ])

    const info = await json(['repo', 'info', '--repo', repo2])
    const stored = list.backups.reduce((a: number, b: {storedBytes: number}) => a + b.storedBytes, 0)
    expect(info).toStrictEqual({repo: `file://${repo2}`, config: expect.objectContaining({format: 'engram-ops-repo/1', compression: {codec: 'zstd', level: 1}}), backups: 3, incomplete: 0, bytes: expect.any(Number), newest: both.id, warnings: []})
    // Objects: the archives plus a manifest per backup.
    expect(info.bytes).toBeGreaterThan(stored)
    const infoText = await run(['repo', 'info', '--repo', repo2])
    expect(infoText.stdout.split('\n')[2]).toMatch(new RegExp(`^  3 complete backups, \\S+ \\S+; newest ${both.id}$`))

    // Prune: keep the newest backup and one full; the other two go. Without --yes (or with --dry-run)
    // nothing changes; --keep-within keeps everything taken within the hour.
    const policy = ['--keep-last', '1', '--keep-daily', '0', '--keep-weekly', '0', '--keep-monthly', '0', '--min-full', '1']
    const files = await filesUnder(repo2)
    for (const extra of [[], ['--dry-run']]) {
      const plan = await json(['backup', 'prune', '--repo', repo2, ...policy, ...extra])
      expect(plan).toMatchObject({dryRun: true, kept: 1, deleted: [oneInc.id, one.id], incomplete: []})
      expect(plan.decisions.map((d: {id: string; keep: boolean; reasons: string[]}) => [d.id, d.keep, d.reasons])).toEqual([
        [both.id, true, ['last', 'min-full']],
        [oneInc.id, false, []],
        [one.id, false, []],
      ])
    }
    expect(await filesUnder(repo2)).toEqual(files)
    const within = await json(['backup', 'prune', '--repo', repo2, ...policy, '--keep-within', '1h'])
    expect(within).toMatchObject({kept: 3, deleted: []})
    expect(within.decisions.map((d: {reasons: string[]}) => d.reasons.includes('within'))).toEqual([true, true, true])
    const applied = await json(['backup', 'prune', '--repo', repo2, ...policy, '--yes'])
    expect(applied).toMatchObject({dryRun: false, kept: 1, deleted: [oneInc.id, one.id]})
    expect((await json(['backup', 'list', '--repo', repo2])).backups.map((b: {id: string}) => b.id)).toEqual([both.id])
    expect((await filesUnder(repo2)).filter((f) => f.startsWith('backups/'))).toEqual([`backups/${both.id}/default.tar.zst`, `backups/${both.id}/manifest.json`, `backups/${both.id}/tenant-001.tar.zst`])
  })
})
