/**
 * Integrity of a backup repository (FsBackend, a local directory):
 *  - every single-bit flip in every object (repository config, each manifest, each archive; first
 *    byte, last byte and random middle bytes) is detected: `verifyBackup` level 2 reports it (the
 *    config and the manifests already fail to open, with an IntegrityError, exit 15), a restore of
 *    the affected backup through the CLI exits 15, and the restore target is left exactly as it was;
 *  - hostile archives (`../evil`, an absolute path, symlink and hard-link entries, an entry of
 *    another space, an entry the manifest does not list), sealed into a manifest that passes level 2,
 *    are refused by restore (exit 15, ARCHIVE_REFUSED) without writing anything anywhere.
 *
 * Backups and restores run through the built CLI (dist/); verification and object inspection
 * in-process (src/).
 */
import {existsSync} from 'node:fs'
import {lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, realpath, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, relative, sep} from 'node:path'

import {Header} from 'tar'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {IntegrityError} from '../../src/lib/errors.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {FrameCompressor} from '../../src/lib/repo/compression.js'
import {type FileCapture, type Manifest, sealManifest} from '../../src/lib/repo/manifest.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {runRestore} from '../../src/lib/restore/restore.js'
import {verifyBackup} from '../../src/lib/restore/verify.js'
import {createReporter} from '../../src/lib/ui/reporter.js'
import {blake3, repoRoot, sha256} from '../support/fixtures.js'
import {runCli} from '../support/cli.js'
import {filesUnder} from '../support/files.js'

const cli = runCli

const reporter = createReporter({json: true, quiet: true})

/** Everything under `dir` (files with size, mode and sha256; directories; symlinks with their target). */
async function snapshot(dir: string, skip: string[] = []): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string) => {
    for (const e of await readdir(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (skip.includes(p)) continue
      const rel = relative(dir, p).split(sep).join('/')
      const st = await lstat(p)
      if (st.isSymbolicLink()) out[rel] = `symlink -> ${await readlink(p)}`
      else if (st.isDirectory()) {
        out[`${rel}/`] = `dir ${(st.mode & 0o7777).toString(8)}`
        await walk(p)
      } else out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${sha256(await readFile(p))} ino ${st.ino}`
    }
  }
  await walk(dir)
  return out
}

/** Files of the repository this process holds open (Linux: /proc/self/fd). */
async function openRepoFiles(): Promise<string[]> {
  if (!existsSync('/proc/self/fd')) return []
  const out: string[] = []
  for (const fd of await readdir('/proc/self/fd')) {
    const t = await readlink(`/proc/self/fd/${fd}`).catch(() => '')
    if (t.startsWith(`${repoReal}/`)) out.push(t)
  }
  return out
}

/** A failed restore or verification closes every object it opened (not only when the GC runs). */
async function expectNoRepoFilesOpen(): Promise<void> {
  for (let i = 0; i < 50 && (await openRepoFiles()).length > 0; i++) await new Promise((r) => setTimeout(r, 20))
  expect(await openRepoFiles()).toEqual([])
}

const SPACES = ['default', 'tenant-001']
const EPISODES = 1300
const APPENDED = 60

let tmp: string
let data: string
let repoDir: string
let repoReal: string
/** Restores go into area/target; the area (and the whole tmp dir) must not change when one fails. */
let area: string
let target: string
let full: string
let incr: string

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'restore', 'index.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json`')
  tmp = await mkdtemp(join(tmpdir(), 'engram-integrity-'))
  data = join(tmp, 'data')
  repoDir = join(tmp, 'repo')
  area = join(tmp, 'area')
  target = join(area, 'target')
  const gen = await cli(['engine', 'generate', '--data-dir', data, '--spaces', '2', '--episodes', String(EPISODES), '--no-sync'])
  expect(gen.code, gen.stderr).toBe(0)
  expect((await cli(['repo', 'init', '--repo', repoDir])).code).toBe(0)
  repoReal = await realpath(repoDir)
  const f = await cli(['backup', 'full', '--data-dir', data, '--repo', repoDir, '--json'])
  expect(f.code, f.stderr).toBe(0)
  full = JSON.parse(f.stdout).id
  const more = await cli(['engine', 'generate', '--data-dir', data, '--spaces', '2', '--episodes', String(APPENDED), '--append', '--start', '2026-11-18T14:00:00Z', '--seed', '7', '--no-sync'])
  expect(more.code, more.stderr).toBe(0)
  const i = await cli(['backup', 'incremental', '--data-dir', data, '--repo', repoDir, '--json'])
  expect(i.code, i.stderr).toBe(0)
  const ir = JSON.parse(i.stdout)
  expect(ir).toMatchObject({type: 'incremental', parent: full, totals: {records: 2 * APPENDED}})
  incr = ir.id
  // The restore target: an existing data directory with a sentinel, which a failed restore must keep.
  await mkdir(join(target, 'default', 'wal'), {recursive: true})
  await writeFile(join(target, 'SENTINEL'), 'this must survive a failed restore\n', {mode: 0o640})
  await writeFile(join(target, 'default', 'wal', 'wal-0000000000000001.log'), Buffer.alloc(1000, 7), {mode: 0o600})
  // A healthy repository restores (so a failure below is the corruption's doing), and verifies at L3.
  const ok = await cli(['restore', incr, '--repo', repoDir, '--to', join(tmp, 'healthy'), '--json'])
  expect(ok.code, ok.stdout + ok.stderr).toBe(0)
  for (const s of SPACES) {
    const [name] = (await readdir(join(data, s, 'wal'))).filter((n) => n.endsWith('.log'))
    expect(sha256(await readFile(join(tmp, 'healthy', s, 'wal', name)))).toBe(sha256(await readFile(join(data, s, 'wal', name))))
  }
  await rm(join(tmp, 'healthy'), {recursive: true})
  const repo = await Repository.open(new FsBackend(repoDir))
  for (const id of [full, incr]) expect((await verifyBackup(repo, id, 3, reporter)).findings).toEqual([])
}, 120_000)

afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

/**
 * A restore of `id` that must fail with exit code 15 (through the CLI: its exit status; in-process:
 * the error's exitCode) and leave everything outside the repository exactly as it was.
 */
async function restoreFails(id: string, before: Record<string, string>, via: 'cli' | 'lib'): Promise<{code: string; name: string; message: string}> {
  let error: {code: string; name: string; message: string; exitCode: number}
  if (via === 'cli') {
    const r = await cli(['restore', id, '--repo', repoDir, '--to', target, '--yes', '--json'])
    expect(r.code, `restore ${id}: ${r.stdout}${r.stderr}`).toBe(15)
    error = JSON.parse(r.stdout).error
  } else {
    const err = await Repository.open(new FsBackend(repoDir))
      .then((repo) => runRestore(repo, {id, spaces: [], to: target, yes: true, dryRun: false, reporter}))
      .then(
        () => null,
        (e: unknown) => e,
      )
    expect(err, `restore ${id} succeeded`).toBeInstanceOf(IntegrityError)
    error = err as IntegrityError & {code: string}
    await expectNoRepoFilesOpen()
  }
  expect(error.exitCode).toBe(15)
  // Target untouched (sentinel and all), no staging directory or moved-aside copy beside it, nothing
  // written anywhere else either.
  expect(await snapshot(tmp, [repoDir])).toEqual(before)
  expect(await readFile(join(target, 'SENTINEL'), 'utf8')).toBe('this must survive a failed restore\n')
  expect((await readdir(area)).filter((n) => n !== 'target')).toEqual([])
  return error
}

describe('every single-bit flip in every object is detected', () => {
  it('config, manifests and archives: level 2 / opening fails, restore exits 15, the target is untouched', {timeout: 240_000}, async () => {
    const objects = (await filesUnder(repoDir)).filter((f) => !f.endsWith('/verification.json'))
    expect(objects).toEqual(
      [
        'engram-ops-repo.json',
        ...[full, incr].flatMap((id) => [`backups/${id}/manifest.json`, ...SPACES.map((s) => `backups/${id}/${s}.tar.zst`)]),
      ].sort(),
    )
    const before = await snapshot(tmp, [repoDir])
    const masks = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80]
    let flips = 0
    const seen = {config: 0, manifest: 0, archive: 0}
    const restoreCodes = new Map<string, number>()
    const restores = {cli: 0, lib: 0}
    for (const key of objects) {
      const path = join(repoDir, ...key.split('/'))
      const size = (await lstat(path)).size
      const offsets = new Set([0, size - 1])
      while (offsets.size < 6) offsets.add(1 + Math.floor(Math.random() * (size - 2)))
      const owner = /^backups\/([^/]+)\//.exec(key)?.[1] ?? null
      let n = 0
      for (const offset of offsets) {
        // The first and the last byte through the CLI (exit status), the others in-process (faster);
        // the first byte (a frame header of an archive) in-process too.
        const vias: Array<'cli' | 'lib'> = n === 0 ? ['cli', 'lib'] : n === 1 ? ['cli'] : ['lib']
        n++
        const refused = async (id: string) => {
          const errors: Array<{code: string; name: string; message: string}> = []
          for (const via of vias) {
            restores[via]++
            errors.push(await restoreFails(id, before, via))
          }
          return errors
        }
        const mask = masks[flips % masks.length]
        flips++
        const fh = await open(path, 'r+')
        const orig = Buffer.alloc(1)
        await fh.read(orig, 0, 1, offset)
        await fh.write(Buffer.from([orig[0] ^ mask]), 0, 1, offset)
        await fh.close()
        const what = `${key} byte ${offset} ^ 0x${mask.toString(16)}`
        try {
          if (key === 'engram-ops-repo.json') {
            seen.config++
            // Nothing can be trusted: opening the repository fails (exit 15), and so does every restore.
            const err = await Repository.open(new FsBackend(repoDir)).then(
              () => null,
              (e: unknown) => e,
            )
            expect(err, what).toBeInstanceOf(IntegrityError)
            expect((err as IntegrityError).exitCode).toBe(15)
            expect((err as IntegrityError).code).toBe('REPO_CONFIG_CORRUPT')
            for (const e of await refused(incr)) expect(e.code, what).toBe('REPO_CONFIG_CORRUPT')
          } else if (key.endsWith('/manifest.json')) {
            seen.manifest++
            const repo = await Repository.open(new FsBackend(repoDir))
            const err = await repo.manifest(owner!).then(
              () => null,
              (e: unknown) => e,
            )
            expect(err, what).toBeInstanceOf(IntegrityError)
            expect((err as IntegrityError).code).toBe('MANIFEST_CORRUPT')
            expect((err as IntegrityError).exitCode).toBe(15)
            // Level 2 (which includes level 1) reports it for the backup and for every backup on top of it.
            for (const id of owner === full ? [full, incr] : [incr]) {
              const v = await verifyBackup(repo, id, 2, reporter)
              expect(v.ok, what).toBe(false)
              expect(v.findings).toEqual([{backup: id, level: 1, problem: expect.stringMatching(new RegExp(`^manifest of backup ${owner} (fails its checksum|is not valid JSON)$`))}])
            }
            for (const e of await refused(owner!)) expect(e.code, what).toBe('MANIFEST_CORRUPT')
          } else {
            seen.archive++
            const repo = await Repository.open(new FsBackend(repoDir))
            // Same size: level 1 cannot see it, level 2 does.
            expect((await verifyBackup(repo, owner!, 1, reporter)).ok, what).toBe(true)
            const v = await verifyBackup(repo, owner!, 2, reporter)
            expect(v.ok, what).toBe(false)
            expect(v.findings).toEqual([{backup: owner, level: 2, object: key, problem: expect.stringMatching(/^blake3 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}$/)}])
            for (const e of await refused(owner!)) {
              expect(e.name, what).toBe('IntegrityError')
              restoreCodes.set(e.code, (restoreCodes.get(e.code) ?? 0) + 1)
            }
            // A damaged full breaks the incrementals on top of it too.
            if (owner === full && offset === 0) await restoreFails(incr, before, 'lib')
          }
        } finally {
          const fh2 = await open(path, 'r+')
          await fh2.write(orig, 0, 1, offset)
          await fh2.close()
        }
      }
    }
    expect(flips).toBeGreaterThanOrEqual(40)
    expect(seen).toEqual({config: 6, manifest: 12, archive: 24})
    // Archive damage is reported by the streaming checks (object hash, entry hash, zstd, tar).
    expect([...restoreCodes.keys()].every((c) => ['CHECKSUM_MISMATCH', 'ARCHIVE_CORRUPT', 'ARCHIVE_REFUSED'].includes(c)), JSON.stringify([...restoreCodes])).toBe(true)
    console.log(`integrity: ${flips} single-bit flips in ${objects.length} objects, all detected; restores refused: ${restores.cli} through the CLI, ${restores.lib} in-process; archive restore failures by code: ${JSON.stringify(Object.fromEntries(restoreCodes))}`)
    // Everything is back as it was: the repository verifies and restores again.
    const repo = await Repository.open(new FsBackend(repoDir))
    expect((await verifyBackup(repo, incr, 2, reporter)).ok).toBe(true)
  })
})

interface Entry {
  path: string
  type?: 'File' | 'SymbolicLink' | 'Link' | 'Directory'
  linkpath?: string
  body?: Buffer
}

function tarOf(entries: Entry[]): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const body = e.body ?? Buffer.alloc(0)
    const h = new Header({path: e.path, type: e.type ?? 'File', linkpath: e.linkpath, size: body.length, mode: 0o600, mtime: new Date(1_795_000_000_000), uid: 0, gid: 0, uname: '', gname: ''})
    const block = Buffer.alloc(512)
    h.encode(block, 0)
    expect(h.needPax).toBe(false)
    parts.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

describe('hostile archives sealed into a manifest that passes level 2 are refused by restore', () => {
  let manifestPath: string
  let archivePath: string
  let originalManifest: Buffer
  let originalArchive: Buffer
  let walName: string
  let walBytes: Buffer
  let otherWal: Buffer
  let outside: string
  let outsideContent: string

  beforeAll(async () => {
    manifestPath = join(repoDir, 'backups', full, 'manifest.json')
    archivePath = join(repoDir, 'backups', full, 'default.tar.zst')
    originalManifest = await readFile(manifestPath)
    originalArchive = await readFile(archivePath)
    const m = JSON.parse(originalManifest.toString('utf8')) as Manifest
    const cap = m.spaces.find((s) => s.space === 'default')!.files[0]
    walName = cap.name
    // The bytes the full backup captured (the file has grown since).
    walBytes = (await readFile(join(data, 'default', 'wal', walName))).subarray(0, cap.length)
    otherWal = (await readFile(join(data, 'tenant-001', 'wal', walName))).subarray(0, 4096)
    outside = join(tmp, 'outside.txt')
    outsideContent = 'a file outside the target that a link entry points at\n'
    await writeFile(outside, outsideContent)
  })

  afterAll(async () => {
    await writeFile(manifestPath, originalManifest)
    await writeFile(archivePath, originalArchive)
  })

  /** Puts `entries` as the full backup's `default` archive, with a re-sealed manifest listing `listed`. */
  async function plant(entries: Entry[], listed: Entry[]): Promise<void> {
    const tar = tarOf(entries)
    // Compressed as backups are (indexed zstd frames), so only the tar inside is hostile.
    const compressor = new FrameCompressor(3)
    const archive = Buffer.concat(await compressor.compress(tar))
    compressor.close()
    const m = JSON.parse(originalManifest.toString('utf8')) as Manifest
    const sp = m.spaces.find((s) => s.space === 'default')!
    const template = sp.files[0]
    sp.files = listed.map((e): FileCapture => {
      const body = e.body ?? Buffer.alloc(0)
      return {...template, name: e.path.split('/').pop()!, entry: e.path, offset: 0, length: body.length, end: body.length, hash: blake3(body)}
    })
    sp.archive = {key: sp.archive!.key, size: archive.length, hash: blake3(archive), uncompressedSize: tar.length}
    await writeFile(archivePath, archive)
    await writeFile(manifestPath, `${JSON.stringify(sealManifest(m), null, 2)}\n`)
  }

  const walEntry = () => `default/wal/${walName}`
  const evil = Buffer.from('pwned\n')
  const cases: Array<{name: string; entries: () => Entry[]; listed?: () => Entry[]; message: RegExp; mustNotExist: () => string[]}> = [
    {
      name: 'an entry ../evil',
      entries: () => [{path: '../evil', body: evil}],
      message: /has an entry outside the restore target: "\.\.\/evil"/,
      mustNotExist: () => [join(area, 'evil'), join(tmp, 'evil')],
    },
    {
      name: 'an entry default/wal/../../../evil',
      entries: () => [{path: 'default/wal/../../../evil', body: evil}],
      message: /has an entry outside the restore target/,
      mustNotExist: () => [join(area, 'evil'), join(tmp, 'evil')],
    },
    {
      name: 'an absolute path',
      entries: () => [{path: join(tmp, 'tmp', 'evil'), body: evil}],
      message: /has an entry outside the restore target: "\//,
      mustNotExist: () => [join(tmp, 'tmp', 'evil'), join(tmp, 'tmp')],
    },
    {
      name: 'a symlink entry (then a file written through it)',
      entries: () => [
        {path: walEntry(), type: 'SymbolicLink', linkpath: join(tmp, 'symlinked')},
        {path: walEntry(), body: evil},
      ],
      message: /has a (symbolic link|SymbolicLink) entry/,
      mustNotExist: () => [join(tmp, 'symlinked')],
    },
    {
      name: 'a hard link entry (then a file written through it)',
      entries: () => [
        {path: walEntry(), type: 'Link', linkpath: outside},
        {path: walEntry(), body: evil},
      ],
      message: /has a (hard link|Link) entry/,
      mustNotExist: () => [],
    },
    {
      name: "an entry for another space (tenant-001's WAL in default's archive)",
      entries: () => [{path: `tenant-001/wal/${walName}`, body: otherWal}],
      message: /has an entry that is not a WAL file of space default: "tenant-001\/wal\//,
      mustNotExist: () => [],
    },
    {
      name: 'an entry the manifest does not list',
      entries: () => [
        {path: walEntry(), body: walBytes},
        {path: 'default/wal/wal-00000000deadbeef.log', body: evil},
      ],
      listed: () => [{path: walEntry(), body: walBytes}],
      message: /has an entry the manifest does not list: "default\/wal\/wal-00000000deadbeef\.log"/,
      mustNotExist: () => [],
    },
  ]

  for (const c of cases) {
    it(`refuses ${c.name}`, {timeout: 60_000}, async () => {
      await plant(c.entries(), (c.listed ?? c.entries)())
      const repo = await Repository.open(new FsBackend(repoDir))
      // The manifest is sealed and the archive matches it: levels 1 and 2 pass, level 3 does not.
      expect((await verifyBackup(repo, full, 2, reporter)).findings).toEqual([])
      const v3 = await verifyBackup(repo, full, 3, reporter)
      expect(v3.ok).toBe(false)
      expect(v3.findings[0]).toMatchObject({backup: full, level: 3, problem: expect.stringMatching(c.message)})
      await expectNoRepoFilesOpen()
      const before = await snapshot(tmp, [repoDir])
      for (const p of c.mustNotExist()) expect(existsSync(p), p).toBe(false)
      const e = await restoreFails(full, before, 'cli')
      expect(e).toMatchObject({name: 'IntegrityError', code: 'ARCHIVE_REFUSED', message: expect.stringMatching(c.message)})
      for (const p of c.mustNotExist()) expect(existsSync(p), p).toBe(false)
      expect(await readFile(outside, 'utf8')).toBe(outsideContent)
      // The incremental on top of it is refused the same way.
      expect((await restoreFails(incr, before, 'lib')).code).toBe('ARCHIVE_REFUSED')
    })
  }

  it('a hand-built archive that is honest restores (the planting itself is sound)', {timeout: 60_000}, async () => {
    await plant([{path: walEntry(), body: walBytes}], [{path: walEntry(), body: walBytes}])
    const repo = await Repository.open(new FsBackend(repoDir))
    expect((await verifyBackup(repo, full, 3, reporter)).findings).toEqual([])
    const to = join(tmp, 'honest')
    const r = await cli(['restore', full, '--repo', repoDir, '--to', to, '--space', 'default', '--json'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(sha256(await readFile(join(to, 'default', 'wal', walName)))).toBe(sha256(walBytes))
    await rm(to, {recursive: true})
  })
})

/**
 * A flipped bit anywhere in an archive fails the restore, byte by byte on small archives: including
 * bits zstd ignores (the window descriptor, parts of entropy table headers; found by this test when
 * restore relied on zstd's checksums alone) and, in an uncompressed archive, the tar padding and the
 * end-of-archive blocks, which no file's hash covers.
 */
describe('restore checks every byte of an archive', () => {
  let small: string
  const flipAndRestore = async (dir: string, key: string, offsets: number[]) => {
    const repo = await Repository.open(new FsBackend(dir))
    const id = key.split('/')[1]
    const path = join(dir, ...key.split('/'))
    const missed: number[] = []
    for (const offset of offsets) {
      const fh = await open(path, 'r+')
      const orig = Buffer.alloc(1)
      await fh.read(orig, 0, 1, offset)
      await fh.write(Buffer.from([orig[0] ^ (1 << (offset % 8))]), 0, 1, offset)
      try {
        const err = await runRestore(repo, {id, spaces: [], to: join(small, 'out'), yes: true, dryRun: false, reporter}).then(
          () => null,
          (e: unknown) => e,
        )
        if (!(err instanceof IntegrityError)) missed.push(offset)
        await rm(join(small, 'out'), {recursive: true, force: true})
      } finally {
        await fh.write(orig, 0, 1, offset)
        await fh.close()
      }
    }
    return missed
  }

  beforeAll(async () => {
    small = await mkdtemp(join(tmpdir(), 'engram-integrity-small-'))
    const gen = await cli(['engine', 'generate', '--data-dir', join(small, 'data'), '--spaces', '1', '--episodes', '3', '--no-sync'])
    expect(gen.code, gen.stderr).toBe(0)
    for (const c of ['zstd', 'none']) {
      expect((await cli(['repo', 'init', '--repo', join(small, c), '--compression', c])).code).toBe(0)
      const b = await cli(['backup', 'full', '--data-dir', join(small, 'data'), '--repo', join(small, c), '--json'])
      expect(b.code, b.stderr).toBe(0)
    }
  }, 60_000)
  afterAll(async () => {
    if (small) await rm(small, {recursive: true, force: true})
  })

  it('zstd: a flipped bit anywhere (every byte of the first and last 256, every 7th between) fails the restore with exit 15', {timeout: 120_000}, async () => {
    const [key] = (await filesUnder(join(small, 'zstd'))).filter((k) => k.endsWith('.tar.zst'))
    const size = (await lstat(join(small, 'zstd', ...key.split('/')))).size
    expect(size).toBeGreaterThan(1024)
    const offsets = [...new Set([...Array.from({length: 256}, (_, i) => i), ...Array.from({length: 256}, (_, i) => size - 1 - i), ...Array.from({length: Math.floor(size / 7)}, (_, i) => 7 * i)])].filter((o) => o >= 0 && o < size)
    expect(await flipAndRestore(join(small, 'zstd'), key, offsets)).toEqual([])
  })

  it('none: a flipped bit in the tar padding or the end-of-archive blocks (no file changes) fails the restore by the object hash', {timeout: 60_000}, async () => {
    const [key] = (await filesUnder(join(small, 'none'))).filter((k) => k.endsWith('.tar'))
    const size = (await lstat(join(small, 'none', ...key.split('/')))).size
    const [wal] = await readdir(join(small, 'data', 'default', 'wal'))
    const walSize = (await lstat(join(small, 'data', 'default', 'wal', wal))).size
    // header (512) + data + padding to 512, then two zero blocks and the rest of the record.
    const padding = Array.from({length: (512 - (walSize % 512)) % 512}, (_, i) => 512 + walSize + i)
    const trailer = Array.from({length: size - (512 + walSize + padding.length)}, (_, i) => 512 + walSize + padding.length + i).filter((_, i) => i % 5 === 0)
    expect(trailer.length).toBeGreaterThan(100)
    expect(await flipAndRestore(join(small, 'none'), key, [...padding, ...trailer])).toEqual([])
  })
})
