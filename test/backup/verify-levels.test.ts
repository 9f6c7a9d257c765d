/**
 * Backup verification levels do what they say (src/lib/restore/verify.ts):
 *  L1  manifests (with their checksums) and object presence and sizes, without reading any archive;
 *  L2  every object's hash;
 *  L3  unpack; every entry's hash; every record read back; per-file record and episode counts and
 *      sizes against the manifests;
 *  L4  restore, open with the engine, serve it, and compare: the engine loaded every space, its replay
 *      applied the episodes the manifests captured, the server serves the replay's memory count,
 *      memories sampled at backup time still have the payload they had, and memories read through
 *      the HTTP API match the restored records.
 * Plus `backup verify --all` exit codes and `backup list` showing the last verification.
 */
import {existsSync} from 'node:fs'
import {mkdtemp, open, readFile, rename, rm, truncate, unlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, it, vi} from 'vitest'

import {AdminClient} from '../../src/lib/admin/client.js'
import {EngineStore} from '../../src/lib/engine/store.js'
import type {RepositoryBackend} from '../../src/lib/repo/backend.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {type Manifest, sealManifest} from '../../src/lib/repo/manifest.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {verifyBackup} from '../../src/lib/restore/verify.js'
import {createReporter} from '../../src/lib/ui/reporter.js'
import {repoRoot} from '../support/fixtures.js'
import {fileContents, filesUnder} from '../support/files.js'
import {runCli} from '../support/cli.js'


const cli = runCli

const reporter = createReporter({json: true, quiet: true})
const SPACES = ['default', 'tenant-001']
const EPISODES = 500
const APPENDED = 40

let tmp: string
let data: string
let repoDir: string
let full: string
let incr: string
/** Every object of the repository as it was after the backups, restored after each test. */
const pristine = new Map<string, Buffer>()


/** A repository whose backend records every object it reads. */
async function countingRepo(): Promise<{repo: Repository; reads: string[]}> {
  const fs = new FsBackend(repoDir)
  const reads: string[] = []
  const backend: RepositoryBackend = {
    url: fs.url,
    stat: (k) => fs.stat(k),
    list: (p) => fs.list(p),
    get: (k, o) => {
      reads.push(k)
      return fs.get(k, o)
    },
    put: (k, b, o) => fs.put(k, b, o),
    delete: (k) => fs.delete(k),
    close: () => fs.close(),
  }
  const repo = await Repository.open(backend)
  reads.length = 0
  return {repo, reads}
}

const manifestPath = (id: string) => join(repoDir, 'backups', id, 'manifest.json')
const archiveKey = (id: string, space: string) => `backups/${id}/${space}.tar.zst`
const archivePath = (id: string, space: string) => join(repoDir, ...archiveKey(id, space).split('/'))
const readManifest = async (id: string) => JSON.parse(await readFile(manifestPath(id), 'utf8')) as Manifest

/** Changes a manifest and re-seals it, so its own checksum passes again. */
async function tamper(id: string, change: (m: Manifest) => void): Promise<void> {
  const m = await readManifest(id)
  change(m)
  await writeFile(manifestPath(id), `${JSON.stringify(sealManifest(m), null, 2)}\n`)
}

async function flipByte(path: string, offset: number): Promise<void> {
  const fh = await open(path, 'r+')
  const b = Buffer.alloc(1)
  await fh.read(b, 0, 1, offset)
  b[0] ^= 0x10
  await fh.write(b, 0, 1, offset)
  await fh.close()
}

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'backup', 'verify.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json`')
  tmp = await mkdtemp(join(tmpdir(), 'engram-verify-'))
  data = join(tmp, 'data')
  repoDir = join(tmp, 'repo')
  const gen = await cli(['engine', 'generate', '--data-dir', data, '--spaces', '2', '--episodes', String(EPISODES), '--no-sync'])
  expect(gen.code, gen.stderr).toBe(0)
  expect((await cli(['repo', 'init', '--repo', repoDir])).code).toBe(0)
  const f = await cli(['backup', 'full', '--data-dir', data, '--repo', repoDir, '--json'])
  expect(f.code, f.stderr).toBe(0)
  full = JSON.parse(f.stdout).id
  const more = await cli(['engine', 'generate', '--data-dir', data, '--spaces', '2', '--episodes', String(APPENDED), '--append', '--start', '2026-11-18T14:00:00Z', '--seed', '9', '--no-sync'])
  expect(more.code, more.stderr).toBe(0)
  const i = await cli(['backup', 'incremental', '--data-dir', data, '--repo', repoDir, '--json'])
  expect(i.code, i.stderr).toBe(0)
  incr = JSON.parse(i.stdout).id
  expect(JSON.parse(i.stdout)).toMatchObject({type: 'incremental', parent: full})
  for (const [f, bytes] of await fileContents(repoDir)) pristine.set(f, bytes)
}, 120_000)

afterEach(async () => {
  vi.restoreAllMocks()
  for (const f of await filesUnder(repoDir)) if (!pristine.has(f) && !f.endsWith('/verification.json')) await unlink(join(repoDir, ...f.split('/')))
  for (const [f, bytes] of pristine) await writeFile(join(repoDir, ...f.split('/')), bytes)
})

afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

describe('healthy backups pass every level', () => {
  it('L1 reads no archive; L2 reads every archive of the chain once; L3 and L4 check every record and memory', {timeout: 120_000}, async () => {
    const {repo, reads} = await countingRepo()
    const chainArchives = [full, incr].flatMap((id) => SPACES.map((s) => archiveKey(id, s)))
    const l1 = await verifyBackup(repo, incr, 1, reporter)
    expect(l1).toMatchObject({ok: true, findings: [], checked: {manifests: 2, objects: 4, bytes: 0, records: 0, memories: null}})
    expect(reads.filter((k) => !k.endsWith('/manifest.json'))).toEqual([])
    reads.length = 0
    const l2 = await verifyBackup(repo, incr, 2, reporter)
    expect(l2.ok).toBe(true)
    expect(reads.filter((k) => !k.endsWith('/manifest.json')).sort()).toEqual(chainArchives.sort())
    const sizes = await Promise.all(chainArchives.map(async (k) => (await readFile(join(repoDir, ...k.split('/')))).length))
    expect(l2.checked.bytes).toBe(sizes.reduce((a, b) => a + b, 0))
    const l3 = await verifyBackup(repo, incr, 3, reporter)
    expect(l3).toMatchObject({ok: true, findings: [], checked: {records: SPACES.length * (EPISODES + APPENDED), memories: null}})
    const l4 = await verifyBackup(repo, incr, 4, reporter)
    expect(l4.findings).toEqual([])
    expect(l4.checked.memories).toBeGreaterThan(0)
    expect(l4.checked.memories).toBeLessThanOrEqual(SPACES.length * (EPISODES + APPENDED))
    expect(l4.checked.samples).toBeGreaterThan(SPACES.length * 4)
  })
})

describe('level 1: manifests and object presence and sizes, without reading data', () => {
  it('detects a missing archive object (and, through the chain, in the incremental on top)', async () => {
    await rename(archivePath(full, 'tenant-001'), `${archivePath(full, 'tenant-001')}.away`)
    const {repo, reads} = await countingRepo()
    for (const id of [full, incr]) {
      const r = await verifyBackup(repo, id, 1, reporter)
      expect(r.ok).toBe(false)
      expect(r.findings).toEqual([{backup: id, level: 1, object: archiveKey(full, 'tenant-001'), problem: 'object missing'}])
    }
    expect(reads.filter((k) => !k.endsWith('/manifest.json'))).toEqual([])
    // Higher levels stop at the level-1 finding.
    expect((await verifyBackup(repo, full, 4, reporter)).findings).toEqual([{backup: full, level: 1, object: archiveKey(full, 'tenant-001'), problem: 'object missing'}])
  })

  it('detects an archive one byte longer or shorter than the manifest says', async () => {
    const m = await readManifest(full)
    const size = m.spaces.find((s) => s.space === 'default')!.archive!.size
    const {repo, reads} = await countingRepo()
    await writeFile(archivePath(full, 'default'), Buffer.from([0]), {flag: 'a'})
    expect((await verifyBackup(repo, full, 1, reporter)).findings).toEqual([{backup: full, level: 1, object: archiveKey(full, 'default'), problem: `object has ${size + 1} bytes, the manifest says ${size}`}])
    await truncate(archivePath(full, 'default'), size - 1)
    expect((await verifyBackup(repo, full, 1, reporter)).findings).toEqual([{backup: full, level: 1, object: archiveKey(full, 'default'), problem: `object has ${size - 1} bytes, the manifest says ${size}`}])
    expect(reads.filter((k) => !k.endsWith('/manifest.json'))).toEqual([])
  })

  it('detects a damaged manifest, and a missing one in the chain', async () => {
    await flipByte(manifestPath(full), 100)
    const {repo} = await countingRepo()
    expect((await verifyBackup(repo, incr, 1, reporter)).findings).toEqual([{backup: incr, level: 1, problem: expect.stringMatching(new RegExp(`^manifest of backup ${full} (fails its checksum|is not valid JSON)$`))}])
    await unlink(manifestPath(full))
    const r = await verifyBackup(repo, incr, 1, reporter)
    expect(r.findings).toEqual([{backup: incr, level: 1, problem: expect.stringContaining(`backup ${full} does not exist (or never completed)`)}])
  })
})

describe('level 2: object checksums', () => {
  it('detects a same-size corruption that level 1 misses', async () => {
    const size = (await readFile(archivePath(incr, 'default'))).length
    await flipByte(archivePath(incr, 'default'), Math.floor(size / 2))
    const {repo} = await countingRepo()
    expect((await verifyBackup(repo, incr, 1, reporter)).ok).toBe(true)
    const r = await verifyBackup(repo, incr, 2, reporter)
    expect(r.ok).toBe(false)
    expect(r.findings).toEqual([{backup: incr, level: 2, object: archiveKey(incr, 'default'), problem: expect.stringMatching(/^blake3 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}$/)}])
    // The full underneath is fine.
    expect((await verifyBackup(repo, full, 2, reporter)).ok).toBe(true)
  })
})

describe('level 3: archive content against the per-file records', () => {
  it('detects a wrong record count in a re-sealed manifest that level 2 passes', async () => {
    const m = await readManifest(full)
    const f = m.spaces.find((s) => s.space === 'tenant-001')!.files[0]
    await tamper(full, (x) => x.spaces.find((s) => s.space === 'tenant-001')!.files[0].records++)
    const {repo} = await countingRepo()
    expect((await verifyBackup(repo, full, 2, reporter)).ok).toBe(true)
    const r = await verifyBackup(repo, full, 3, reporter)
    expect(r.ok).toBe(false)
    expect(r.findings).toEqual([
      {backup: full, level: 3, problem: `tenant-001/${f.name}: ${f.records} records (${f.episodes} episodes), ${f.end} bytes; the manifests say ${f.records + 1} (${f.episodes}), ${f.end} bytes`},
    ])
    // The incremental's chain adds up the same wrong count.
    const ri = await verifyBackup(repo, incr, 3, reporter)
    expect(ri.findings).toHaveLength(1)
    expect(ri.findings[0]).toMatchObject({backup: incr, level: 3, problem: expect.stringMatching(new RegExp(`^tenant-001/${f.name}: ${f.records + APPENDED} records .* the manifests say ${f.records + APPENDED + 1} `))})
  })

  it('detects a wrong episode count and a wrong file end', async () => {
    const m = await readManifest(full)
    const f = m.spaces.find((s) => s.space === 'default')!.files[0]
    await tamper(full, (x) => {
      x.spaces.find((s) => s.space === 'default')!.files[0].episodes--
    })
    const {repo} = await countingRepo()
    expect((await verifyBackup(repo, full, 2, reporter)).ok).toBe(true)
    expect((await verifyBackup(repo, full, 3, reporter)).findings).toEqual([
      {backup: full, level: 3, problem: `default/${f.name}: ${f.records} records (${f.episodes} episodes), ${f.end} bytes; the manifests say ${f.records} (${f.episodes - 1}), ${f.end} bytes`},
    ])
    await writeFile(manifestPath(full), pristine.get(`backups/${full}/manifest.json`)!)
    await tamper(full, (x) => {
      x.spaces.find((s) => s.space === 'default')!.files[0].end += 64
    })
    // A new process, as after a real change on disk: a Repository keeps the manifests it has read.
    const {repo: reopened} = await countingRepo()
    expect((await verifyBackup(reopened, full, 3, reporter)).findings).toEqual([
      {backup: full, level: 3, problem: `default/${f.name}: ${f.records} records (${f.episodes} episodes), ${f.end} bytes; the manifests say ${f.records} (${f.episodes}), ${f.end + 64} bytes`},
    ])
  })

  it("detects an entry whose bytes disagree with the manifest's per-file hash", async () => {
    await tamper(full, (x) => {
      const f = x.spaces.find((s) => s.space === 'default')!.files[0]
      f.hash = f.hash.replace(/^./, (c) => (c === '0' ? '1' : '0'))
    })
    const {repo} = await countingRepo()
    expect((await verifyBackup(repo, full, 2, reporter)).ok).toBe(true)
    const r = await verifyBackup(repo, full, 3, reporter)
    expect(r.findings).toEqual([{backup: full, level: 3, object: archiveKey(full, 'default'), problem: expect.stringContaining('does not match its blake3 in the manifest')}])
  })

  it('detects a file the manifests list but the archive does not hold', async () => {
    await tamper(full, (x) => {
      const sp = x.spaces.find((s) => s.space === 'default')!
      sp.files.push({...sp.files[0], name: 'wal-00000000000000aa.log', entry: 'default/wal/wal-00000000000000aa.log'})
    })
    const {repo} = await countingRepo()
    expect((await verifyBackup(repo, full, 2, reporter)).ok).toBe(true)
    const r = await verifyBackup(repo, full, 3, reporter)
    expect(r.findings).toEqual([{backup: full, level: 3, object: archiveKey(full, 'default'), problem: expect.stringContaining('lacks default/wal/wal-00000000000000aa.log, which the manifest lists')}])
  })
})

describe('level 4: restore, open with the engine, serve, compare', () => {
  const l4 = async (id = incr) => {
    const {repo} = await countingRepo()
    return verifyBackup(repo, id, 4, reporter)
  }

  it('a wrong episode count in a re-sealed manifest: level 3 already reports it, so level 4 fails too', async () => {
    await tamper(full, (x) => {
      x.spaces.find((s) => s.space === 'default')!.files[0].episodes++
    })
    const r = await l4()
    expect(r.ok).toBe(false)
    expect(r.findings).toEqual([{backup: incr, level: 3, problem: expect.stringMatching(/^default\/wal-[0-9a-f]{16}\.log: \d+ records/)}])
  })

  it('detects a memory sampled at backup time whose payload differs now (samples re-sealed with other hashes)', async () => {
    const m = await readManifest(full)
    const samples = m.spaces.find((s) => s.space === 'tenant-001')!.samples
    expect(samples.length).toBe(8)
    await tamper(full, (x) => {
      for (const s of x.spaces.find((sp) => sp.space === 'tenant-001')!.samples) s.payloadHash = '0'.repeat(64)
    })
    const {repo} = await countingRepo()
    expect((await verifyBackup(repo, incr, 3, reporter)).ok).toBe(true)
    const r = await verifyBackup(repo, incr, 4, reporter)
    expect(r.ok).toBe(false)
    // Every sampled memory still live at its sampled record is reported.
    for (const f of r.findings) expect(f).toEqual({backup: incr, level: 4, problem: expect.stringMatching(/^space tenant-001: memory \S+ differs from the record sampled at backup time$/)})
    const reported = new Set(r.findings.map((f) => /memory (\S+) differs/.exec(f.problem)![1]))
    expect([...reported].sort()).toEqual(samples.map((s) => s.id).sort())
  })

  it("detects an engine replay that applied fewer or more episodes than the manifests captured", async () => {
    const open = EngineStore.open.bind(EngineStore)
    let delta = -1
    vi.spyOn(EngineStore, 'open').mockImplementation(async (root, o) => {
      const store = await open(root, o)
      store.get('default')!.replay!.counters.episodesStored += delta
      return store
    })
    const r = await l4()
    expect(r.findings).toEqual([{backup: incr, level: 4, problem: expect.stringMatching(/^space default: the engine replayed (\d+) episode records, the manifests captured (\d+)$/)}])
    const [, replayed, captured] = /replayed (\d+) episode records, the manifests captured (\d+)/.exec(r.findings[0].problem)!.map(Number)
    expect(replayed).toBe(captured - 1)
    delta = +1
    const r2 = await l4()
    const [, replayed2, captured2] = /replayed (\d+) episode records, the manifests captured (\d+)/.exec(r2.findings[0]?.problem ?? '')?.map(Number) ?? []
    expect(r2.findings).toHaveLength(1)
    expect(replayed2).toBe(captured2 + 1)
  })

  it('detects a served memory count that differs from the replay', async () => {
    const open = EngineStore.open.bind(EngineStore)
    let live = 0
    vi.spyOn(EngineStore, 'open').mockImplementation(async (root, o) => {
      const store = await open(root, o)
      const st = store.get('tenant-001')!
      live = st.replay!.counters.liveCount
      // The state the server serves loses a memory the replay recovered.
      st.live.delete([...st.live.keys()][0])
      return store
    })
    const r = await l4()
    expect(r.findings).toEqual([{backup: incr, level: 4, problem: `space tenant-001: the server reports ${live - 1} memories, the engine's replay ${live}`}])
  })

  it('detects a space the engine did not load', async () => {
    const open = EngineStore.open.bind(EngineStore)
    vi.spyOn(EngineStore, 'open').mockImplementation(async (root, o) => {
      const store = await open(root, o)
      const get = store.get.bind(store)
      vi.spyOn(store, 'get').mockImplementation((id: string) => (id === 'default' ? undefined : get(id)))
      return store
    })
    const r = await l4()
    expect(r.findings).toEqual([{backup: incr, level: 4, problem: 'space default: the engine did not load it'}])
  })

  it('detects a memory served through the HTTP API with other content than its restored record', async () => {
    const getMemory = AdminClient.prototype.getMemory
    let served = 0
    vi.spyOn(AdminClient.prototype, 'getMemory').mockImplementation(async function (this: AdminClient, id: string, space?: string) {
      const m = await getMemory.call(this, id, space)
      served++
      return space === 'default' && served === 1 ? {...m, content: `${m.content} (altered)`} : m
    })
    const r = await l4()
    expect(r.findings).toEqual([{backup: incr, level: 4, problem: expect.stringMatching(/^space default: GET \/api\/v1\/memories\/\S+ returned other content than the restored record$/)}])
    expect(served).toBe(r.checked.samples)
  })
})

describe('backup verify: what it is asked to verify', () => {
  it('an id the repository does not have exits 2 and writes nothing into the repository', async () => {
    const typo = `${full.slice(0, -1)}${full.endsWith('0') ? '1' : '0'}`
    const before = await filesUnder(repoDir)
    const r = await cli(['backup', 'verify', typo, '--level', '1', '--repo', repoDir, '--json'])
    expect(r.code, r.stdout + r.stderr).toBe(2)
    expect(JSON.parse(r.stdout).error).toMatchObject({code: 'BACKUP_NOT_FOUND', exitCode: 2, subject: `backups/${typo}/manifest.json`})
    expect(await filesUnder(repoDir)).toEqual(before)
    expect(existsSync(join(repoDir, 'backups', typo))).toBe(false)
  })

  it('a repository without a complete backup: --latest, --all, restore --latest and restore pitr exit 2 (NO_BACKUP)', async () => {
    const empty = join(tmp, 'empty-repo')
    expect((await cli(['repo', 'init', '--repo', empty])).code).toBe(0)
    for (const argv of [
      ['backup', 'verify', '--latest', '--repo', empty],
      ['backup', 'verify', '--all', '--repo', empty],
      ['restore', '--latest', '--repo', empty, '--to', join(tmp, 'nothing-restored')],
      ['restore', 'pitr', '--target-time', '2026-11-01T00:00:00Z', '--repo', empty, '--to', join(tmp, 'nothing-restored')],
    ]) {
      const r = await cli([...argv, '--json'])
      expect(r.code, argv.join(' ')).toBe(2)
      expect(JSON.parse(r.stdout).error, argv.join(' ')).toMatchObject({code: 'NO_BACKUP', exitCode: 2, message: `no complete backup in file://${empty}`})
    }
    expect(existsSync(join(tmp, 'nothing-restored'))).toBe(false)
  })

  it('an id together with --latest or --all is refused (exit 2), by verify and by restore alike', async () => {
    for (const argv of [
      ['backup', 'verify', full, '--latest'],
      ['backup', 'verify', full, '--all'],
      ['backup', 'verify'],
      ['restore', full, '--latest', '--to', join(tmp, 'never-restored')],
      ['restore', '--to', join(tmp, 'never-restored')],
    ]) {
      const r = await cli([...argv, '--repo', repoDir, '--json'])
      expect(r.code, argv.join(' ')).toBe(2)
      expect(JSON.parse(r.stdout).error, argv.join(' ')).toMatchObject({code: 'NO_BACKUP_SELECTED', exitCode: 2})
    }
    expect(existsSync(join(tmp, 'never-restored'))).toBe(false)
  })
})

describe('backup verify --all and backup list', () => {
  it('exits 0 on a healthy repository, 15 when one backup is bad, and list shows the last verification', {timeout: 90_000}, async () => {
    const ok = await cli(['backup', 'verify', '--all', '--level', '2', '--repo', repoDir])
    expect(ok.code, ok.stdout + ok.stderr).toBe(0)
    const okLines = ok.stdout.split('\n').filter(Boolean)
    expect(okLines).toHaveLength(2)
    expect(okLines[0]).toMatch(new RegExp(`^${full}: level 2 OK \\(2 objects, 0 records\\) in `))
    expect(okLines[1]).toMatch(new RegExp(`^${incr}: level 2 OK \\(4 objects, 0 records\\) in `))
    let list = JSON.parse((await cli(['backup', 'list', '--repo', repoDir, '--json'])).stdout)
    expect(list.backups.map((b: {id: string; lastVerification: unknown}) => [b.id, b.lastVerification])).toEqual([
      [full, {level: 2, ok: true, at: expect.any(String), detail: ''}],
      [incr, {level: 2, ok: true, at: expect.any(String), detail: ''}],
    ])

    const size = (await readFile(archivePath(incr, 'tenant-001'))).length
    await flipByte(archivePath(incr, 'tenant-001'), Math.floor(size / 3))
    const bad = await cli(['backup', 'verify', '--all', '--level', '2', '--repo', repoDir])
    expect(bad.code, bad.stdout + bad.stderr).toBe(15)
    const badLines = bad.stdout.split('\n').filter(Boolean)
    expect(badLines[0]).toMatch(new RegExp(`^${full}: level 2 OK \\(2 objects, 0 records\\) in `))
    expect(badLines[1]).toMatch(new RegExp(`^${incr}: level 2 FAILED \\(4 objects, 0 records\\) in `))
    expect(badLines[2]).toMatch(new RegExp(`^  L2 backups/${incr}/tenant-001\\.tar\\.zst: blake3 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}$`))
    expect(badLines).toHaveLength(3)
    expect(bad.stderr.replace(/\s+›?\s*/g, ' ')).toContain(`1 of 2 backups failed verification: ${incr}`)
    const badJson = await cli(['backup', 'verify', '--all', '--level', '2', '--repo', repoDir, '--json'])
    expect(badJson.code).toBe(15)
    expect(JSON.parse(badJson.stdout).error).toMatchObject({name: 'IntegrityError', code: 'VERIFY_FAILED', exitCode: 15, subject: archiveKey(incr, 'tenant-001')})

    list = JSON.parse((await cli(['backup', 'list', '--repo', repoDir, '--json'])).stdout)
    expect(list.backups.map((b: {id: string; lastVerification: unknown}) => [b.id, b.lastVerification])).toEqual([
      [full, {level: 2, ok: true, at: expect.any(String), detail: ''}],
      [incr, {level: 2, ok: false, at: expect.any(String), detail: expect.stringMatching(/^blake3 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}$/)}],
    ])
    const table = await cli(['backup', 'list', '--repo', repoDir])
    expect(table.code).toBe(0)
    const row = (id: string) => table.stdout.split('\n').find((l) => l.includes(id)) ?? ''
    expect(row(full)).toMatch(/L2 ok \d{4}-\d\d-\d\dT\d\d:\d\d/)
    expect(row(incr)).toMatch(/L2 FAILED \d{4}-\d\d-\d\dT\d\d:\d\d/)
  })
})
