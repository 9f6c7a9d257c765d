/**
 * The repository lease lock: contention waits up to --lock-wait then exits 12 naming the holder;
 * a holder that releases in time lets the waiter proceed; a lock whose holder is a dead process on
 * this host, or whose lease expired, is broken and reported; the heartbeat renews the lease; waiters
 * racing for one stale lease never both get the lock; a holder whose lease lapsed or was taken over
 * stops renewing and cannot commit.
 */
import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {hostname, tmpdir} from 'node:os'
import {join} from 'node:path'
import type {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {nowNs} from '../../src/lib/engine/datetime.js'
import {makeEpisode, Prng} from '../../src/lib/engine/generate.js'
import {encodeEpisode} from '../../src/lib/engine/payload.js'
import {EntryType} from '../../src/lib/engine/record.js'
import {ensureSpaceDirs, WalWriter} from '../../src/lib/engine/writer.js'
import {ExitCode, LockedError} from '../../src/lib/errors.js'
import type {ObjectInfo, PutOptions} from '../../src/lib/repo/backend.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {LOCK_KEY} from '../../src/lib/repo/layout.js'
import {acquireRepoLock, type LeaseOwner} from '../../src/lib/repo/lock.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {unwrap} from '../support/cli.js'
import {repoRoot} from '../support/fixtures.js'

interface Run {
  code: number | null
  stdout: string
  stderr: string
  ms: number
}

/** Runs the CLI; `onStderr` sees stderr as it grows (to act while the command runs). */
function cli(args: string[], onStderr?: (soFar: string) => void): Promise<Run> {
  const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1', CI: '1'}
  delete env.ENGRAM_DATA_DIR
  delete env.ENGRAM_OPS_REPO
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'run.js'), ...args], {cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d
      onStderr?.(stderr)
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({code, stdout, stderr, ms: Date.now() - started}))
  })
}

/** The pid of a process that has exited (and was reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], {stdio: 'ignore'})
  const pid = child.pid!
  await new Promise((resolve) => child.on('exit', resolve))
  await sleep(20)
  expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({code: 'ESRCH'}))
  return pid
}

let tmp: string
let data: string
let n = 0
const host = hostname()

async function newRepo(): Promise<{dir: string; backend: FsBackend}> {
  const dir = join(tmp, `repo-${n++}`)
  const backend = new FsBackend(dir)
  await Repository.init(backend, {codec: 'zstd', level: 1})
  return {dir, backend}
}

const readLease = async (dir: string) => JSON.parse(await readFile(join(dir, ...LOCK_KEY.split('/')), 'utf8')) as {owner: LeaseOwner; token: string; expiresAt: string}
const completeBackups = async (dir: string) => (await Repository.open(new FsBackend(dir))).completeBackups()
const backupDirs = async (dir: string) => (existsSync(join(dir, 'backups')) ? (await readdir(join(dir, 'backups'))).sort() : [])

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'backup', 'full.js'))) throw new Error('dist/ is not built')
  tmp = await mkdtemp(join(tmpdir(), 'engram-lock-'))
  data = join(tmp, 'data')
  await ensureSpaceDirs(join(data, 'default'))
  const w = await WalWriter.open(join(data, 'default', 'wal'), {createdAtSecs: 0x65000000, fsync: false})
  const rng = new Prng(1)
  const ts = nowNs()
  await w.append(Array.from({length: 4}, (_, i) => ({entryType: EntryType.EpisodeStore, payload: encodeEpisode(makeEpisode(rng, `ep-${i}`, ts)), timestampNs: ts + BigInt(i)})))
  await w.close()
})
afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

describe('backup full against a held repository lock (CLI)', () => {
  it('waits up to --lock-wait, then exits 12 naming the holder pid and host', async () => {
    const {dir, backend} = await newRepo()
    const holder = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0})
    try {
      const [text, json] = await Promise.all([
        cli(['backup', 'full', '--data-dir', data, '--repo', dir, '--lock-wait', '1500ms']),
        cli(['backup', 'full', '--data-dir', data, '--repo', dir, '--lock-wait', '1s', '--json']),
      ])
      expect(text.code).toBe(12)
      expect(text.ms).toBeGreaterThanOrEqual(1500)
      const message = unwrap(text.stderr)
      expect(message).toContain(`repository is locked by backup full (pid ${process.pid} on ${host}); waiting up to 2 s`)
      expect(message).toContain(`repository file://${dir} is locked by backup full (pid ${process.pid} on ${host}, since ${holder.owner.startedAt};`)

      expect(json.code).toBe(12)
      expect(json.ms).toBeGreaterThanOrEqual(1000)
      const err = JSON.parse(json.stdout).error
      expect(err).toMatchObject({code: 'REPO_LOCKED', exitCode: 12, subject: LOCK_KEY})
      expect(err.details.holder).toEqual(holder.owner)
      expect(err.details.holder).toEqual({host, pid: process.pid, command: 'backup full', startedAt: holder.owner.startedAt})
      expect(err.message).toContain(`(pid ${process.pid} on ${host}`)
      // Neither run wrote anything, and the holder still holds the lock.
      expect(await backupDirs(dir)).toEqual([])
      expect((await readLease(dir)).owner).toEqual(holder.owner)
    } finally {
      await holder.release()
    }
    expect(existsSync(join(dir, 'locks', 'repository.lock'))).toBe(false)
  })

  it('proceeds when the holder releases within the wait', async () => {
    const {dir, backend} = await newRepo()
    const holder = await acquireRepoLock(backend, {command: 'backup incremental', waitMs: 0})
    let waiting!: () => void
    const isWaiting = new Promise<void>((resolve) => (waiting = resolve))
    const run = cli(['backup', 'full', '--data-dir', data, '--repo', dir, '--lock-wait', '30s'], (err) => {
      if (err.includes('waiting up to')) waiting()
    })
    await isWaiting
    await sleep(1000)
    expect(await backupDirs(dir)).toEqual([]) // still waiting
    const releasedAt = Date.now()
    await holder.release()
    const r = await run
    expect(r.code).toBe(0)
    expect(Date.now()).toBeGreaterThan(releasedAt)
    expect(r.stderr).toContain(`repository is locked by backup incremental (pid ${process.pid} on ${host}); waiting up to 30 s`)
    expect(r.stdout).toMatch(/^backup \d{8}T\d{6}Z-full-[0-9a-f]{6} \(full\) complete: 1 files, /)
    expect((await completeBackups(dir)).map((m) => m.type)).toEqual(['full'])
    expect(existsSync(join(dir, 'locks', 'repository.lock'))).toBe(false)
  })

  it('a lock whose holder is a dead process on this host is broken and reported; the backup proceeds', async () => {
    const {dir, backend} = await newRepo()
    const pid = await deadPid()
    const owner: LeaseOwner = {host, pid, command: 'backup incremental', startedAt: '2026-11-28T01:02:03.000Z'}
    // Its lease has not expired: only the dead pid makes it stale.
    await backend.put(LOCK_KEY, Buffer.from(JSON.stringify({owner, token: 'dead-token', expiresAt: new Date(Date.now() + 3_600_000).toISOString()})))
    const r = await cli(['backup', 'full', '--data-dir', data, '--repo', dir, '--lock-wait', '0s'])
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(new RegExp(` warning: broke a stale repository lock held by backup incremental \\(pid ${pid} on ${host.replace(/[.]/g, '\\.')}, since 2026-11-28T01:02:03.000Z\\)\n`))
    expect((await completeBackups(dir)).length).toBe(1)
    expect(existsSync(join(dir, 'locks', 'repository.lock'))).toBe(false)

    // In --json the result lists it.
    await backend.put(LOCK_KEY, Buffer.from(JSON.stringify({owner, token: 'dead-token', expiresAt: new Date(Date.now() + 3_600_000).toISOString()})))
    const json = await cli(['backup', 'incremental', '--data-dir', data, '--repo', dir, '--lock-wait', '0s', '--json'])
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout).brokenLocks).toEqual([owner])
  })

  it('an expired lease of another host is broken; a live lease of another host is not', async () => {
    const {dir, backend} = await newRepo()
    // pid 1 is alive here, but this lease belongs to another machine: only its expiry counts.
    const other: LeaseOwner = {host: 'other-host.example', pid: 1, command: 'backup full', startedAt: '2026-11-27T00:00:00.000Z'}
    await backend.put(LOCK_KEY, Buffer.from(JSON.stringify({owner: other, token: 't', expiresAt: new Date(Date.now() + 3_600_000).toISOString()})))
    const blocked = await cli(['backup', 'full', '--data-dir', data, '--repo', dir, '--lock-wait', '0s', '--json'])
    expect(blocked.code).toBe(12)
    expect(JSON.parse(blocked.stdout).error.message).toContain('is locked by backup full (pid 1 on other-host.example, since 2026-11-27T00:00:00.000Z;')
    expect(await backupDirs(dir)).toEqual([])

    await backend.put(LOCK_KEY, Buffer.from(JSON.stringify({owner: other, token: 't', expiresAt: new Date(Date.now() - 1000).toISOString()})))
    const r = await cli(['backup', 'full', '--data-dir', data, '--repo', dir, '--lock-wait', '0s', '--json'])
    expect(r.code).toBe(0)
    const doc = JSON.parse(r.stdout)
    expect(doc.brokenLocks).toEqual([other])
    expect((await completeBackups(dir)).map((m) => m.id)).toEqual([doc.id])
  })
})

describe('acquireRepoLock', () => {
  it('a second acquirer waits, then fails with exit 12 naming the holder; succeeds once released', async () => {
    const {backend} = await newRepo()
    const first = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0})
    const waits: LeaseOwner[] = []
    const started = Date.now()
    const error = await acquireRepoLock(backend, {command: 'backup prune', waitMs: 700, onWait: (h) => waits.push(h)}).then(
      () => null,
      (e: unknown) => e,
    )
    expect(Date.now() - started).toBeGreaterThanOrEqual(650)
    expect(error).toBeInstanceOf(LockedError)
    expect((error as LockedError).exitCode).toBe(ExitCode.locked)
    expect((error as LockedError).details).toMatchObject({holder: first.owner})
    expect(waits).toEqual([first.owner]) // announced once
    await first.release()
    const second = await acquireRepoLock(backend, {command: 'backup prune', waitMs: 0})
    expect(second.broken).toEqual([])
    expect(second.owner.command).toBe('backup prune')
    await second.release()
  })

  it('an unreadable lock object is broken', async () => {
    const {dir, backend} = await newRepo()
    await backend.put(LOCK_KEY, Buffer.from('{"owner": {"host": "x"'))
    const lock = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0})
    expect(lock.broken).toEqual([{host: '?', pid: 0, command: '?', startedAt: '?'}])
    expect((await readLease(dir)).owner).toEqual(lock.owner)
    await lock.release()
  })

  it('the heartbeat renews expiresAt while the lock is held', async () => {
    const {dir, backend} = await newRepo()
    const lock = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0, ttlMs: 1500})
    try {
      const first = await readLease(dir)
      expect(first.owner).toEqual(lock.owner)
      const e0 = Date.parse(first.expiresAt)
      expect(e0 - Date.now()).toBeGreaterThan(1000)
      expect(e0 - Date.now()).toBeLessThanOrEqual(1500)
      // Renewed every ttl/3: after 2.6 s the lease has been renewed several times and never lapsed.
      const seen = [e0]
      for (let i = 0; i < 13; i++) {
        await sleep(200)
        const l = await readLease(dir)
        expect(l.token).toBe(first.token)
        expect(Date.parse(l.expiresAt)).toBeGreaterThan(Date.now())
        if (Date.parse(l.expiresAt) !== seen.at(-1)) seen.push(Date.parse(l.expiresAt))
      }
      expect(seen.length).toBeGreaterThanOrEqual(2)
      expect(seen).toEqual([...seen].sort((a, b) => a - b))
      // Another acquirer sees a live lease and does not break it.
      await expect(acquireRepoLock(backend, {command: 'backup prune', waitMs: 0})).rejects.toBeInstanceOf(LockedError)
    } finally {
      await lock.release()
    }
    expect(existsSync(join(dir, 'locks', 'repository.lock'))).toBe(false)
  })

  it('release() waits for a renewal in flight, so the lock is not written back after release', async () => {
    class SlowRenewals extends FsBackend {
      renewalStarted: Promise<void>
      private started!: () => void
      constructor(root: string) {
        super(root)
        this.renewalStarted = new Promise((resolve) => (this.started = resolve))
      }

      override async put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<ObjectInfo> {
        if (key === LOCK_KEY && !options?.ifAbsent) {
          this.started()
          await sleep(500)
        }
        return super.put(key, body, options)
      }
    }
    const {dir} = await newRepo()
    const backend = new SlowRenewals(dir)
    const lock = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0, ttlMs: 300})
    await backend.renewalStarted // the heartbeat (every ttl/3) is writing the renewed lease
    await lock.release()
    await sleep(700)
    expect(existsSync(join(dir, 'locks', 'repository.lock'))).toBe(false)
    const next = await acquireRepoLock(new FsBackend(dir), {command: 'backup prune', waitMs: 0})
    expect(next.broken).toEqual([])
    await next.release()
  })

  it('waiters racing for one stale lease: exactly one gets the lock and reports it broken, the rest wait and fail', async () => {
    for (let round = 0; round < 15; round++) {
      const {dir, backend} = await newRepo()
      const stale: LeaseOwner = {host: 'other-host.example', pid: 7, command: 'backup full', startedAt: '2026-11-27T00:00:00.000Z'}
      await backend.put(LOCK_KEY, Buffer.from(JSON.stringify({owner: stale, token: 'stale', expiresAt: new Date(Date.now() - 1000).toISOString()})))
      // Separate backend objects, as separate processes would have.
      const results = await Promise.allSettled(Array.from({length: 6}, (_, i) => acquireRepoLock(new FsBackend(dir), {command: `waiter ${i}`, waitMs: 0})))
      const won = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireRepoLock>>>).value)
      const lost = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)
      expect(won).toHaveLength(1)
      // The stale lease is broken exactly once; the waiter that broke it may then lose the race to
      // create the new lease, so the winner reports it or not.
      expect([[], [stale]]).toContainEqual(won[0].broken)
      expect(lost).toHaveLength(5)
      for (const e of lost) expect(e).toBeInstanceOf(LockedError)
      // The winner's lease is the one on disk, and the guard is gone.
      expect((await readLease(dir)).owner).toEqual(won[0].owner)
      expect(existsSync(join(dir, 'locks', 'repository.lock.break'))).toBe(false)
      await won[0].release()
    }
  })

  it('a guard left by a waiter that died while breaking is removed once old; a fresh one means wait', async () => {
    const {dir, backend} = await newRepo()
    const stale: LeaseOwner = {host: 'other-host.example', pid: 7, command: 'backup full', startedAt: '2026-11-27T00:00:00.000Z'}
    const breaker: LeaseOwner = {host: 'other-host.example', pid: 8, command: 'backup prune', startedAt: '2026-11-27T00:00:00.000Z'}
    await backend.put(LOCK_KEY, Buffer.from(JSON.stringify({owner: stale, token: 'stale', expiresAt: new Date(Date.now() - 1000).toISOString()})))
    await backend.put(`${LOCK_KEY}.break`, Buffer.from(JSON.stringify({owner: breaker, token: 'g', expiresAt: new Date(Date.now() + 60_000).toISOString()})))
    await expect(acquireRepoLock(backend, {command: 'backup full', waitMs: 0})).rejects.toBeInstanceOf(LockedError)
    await backend.put(`${LOCK_KEY}.break`, Buffer.from(JSON.stringify({owner: breaker, token: 'g', expiresAt: new Date(Date.now() - 1000).toISOString()})))
    const lock = await acquireRepoLock(backend, {command: 'backup full', waitMs: 2000})
    expect(lock.broken).toEqual([stale])
    expect(existsSync(join(dir, 'locks', 'repository.lock.break'))).toBe(false)
    await lock.release()
  })

  it('a lease taken over by another process is not renewed over, and assertHeld() fails with LOCK_LOST', async () => {
    const {dir, backend} = await newRepo()
    const lock = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0, ttlMs: 600})
    await expect(lock.assertHeld()).resolves.toBeUndefined()
    const other: LeaseOwner = {host: 'other-host.example', pid: 9, command: 'backup prune', startedAt: '2026-11-28T00:00:00.000Z'}
    const theirs = JSON.stringify({owner: other, token: 'theirs', expiresAt: new Date(Date.now() + 60_000).toISOString()})
    await backend.put(LOCK_KEY, Buffer.from(theirs))
    await sleep(700) // several heartbeats
    expect(await readFile(join(dir, 'locks', 'repository.lock'), 'utf8')).toBe(theirs)
    const error = await lock.assertHeld().then(
      () => null,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(LockedError)
    expect((error as LockedError).code).toBe('LOCK_LOST')
    expect((error as LockedError).message).toBe(`lost the repository lock on ${backend.url}: backup prune (pid 9 on other-host.example) holds it now`)
    await lock.release() // leaves their lease alone
    expect(await readFile(join(dir, 'locks', 'repository.lock'), 'utf8')).toBe(theirs)
  })

  it('assertHeld() reads the lease: a takeover between heartbeats is caught before a commit', async () => {
    const {backend} = await newRepo()
    const lock = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0}) // 60 s lease, beats every 10 s
    const other: LeaseOwner = {host: 'other-host.example', pid: 9, command: 'backup prune', startedAt: '2026-11-28T00:00:00.000Z'}
    await backend.put(LOCK_KEY, Buffer.from(JSON.stringify({owner: other, token: 'theirs', expiresAt: new Date(Date.now() + 60_000).toISOString()})))
    await expect(lock.assertHeld()).rejects.toThrow(`lost the repository lock on ${backend.url}: backup prune (pid 9 on other-host.example) holds it now`)
    await lock.release()
  })

  it('a repository unreachable for one heartbeat does not cost the lock: the next beat renews it', async () => {
    const {dir} = await newRepo()
    // Reads of the lease fail for a while (a network blip on S3): the beat that falls in it is skipped.
    let failUntil = 0
    class FlakyBackend extends FsBackend {
      override async get(key: string, options?: Parameters<FsBackend['get']>[1]) {
        if (key === LOCK_KEY && Date.now() < failUntil) throw new Error('connection reset')
        return super.get(key, options)
      }
    }
    const backend = new FlakyBackend(dir)
    const lock = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0, ttlMs: 1200}) // beats every 200 ms
    const before = await readLease(dir)
    failUntil = Date.now() + 450 // two beats at a sixth of the TTL; the only one in it at a third
    await sleep(900)
    await expect(lock.assertHeld()).resolves.toBeUndefined()
    expect(Date.parse((await readLease(dir)).expiresAt)).toBeGreaterThan(Date.parse(before.expiresAt))
    await lock.release()
  })

  it('a holder paused past its lease stops renewing it and cannot commit', async () => {
    const {dir, backend} = await newRepo()
    const lock = await acquireRepoLock(backend, {command: 'backup full', waitMs: 0, ttlMs: 600})
    const before = await readLease(dir)
    // A pause longer than the lease (a suspended VM, a stopped process): the event loop does not run.
    const until = Date.now() + 800
    while (Date.now() < until) {
      // busy
    }
    await expect(lock.assertHeld()).rejects.toThrow(/^lost the repository lock on .*: its lease was about to run out \(at /)
    await sleep(500) // heartbeats that would have renewed it
    expect(await readLease(dir)).toEqual(before)
    // Another process may now break it, and gets it.
    const next = await acquireRepoLock(new FsBackend(dir), {command: 'backup prune', waitMs: 0})
    expect(next.broken).toEqual([lock.owner])
    await lock.release() // not ours any more: leaves the new lease alone
    expect((await readLease(dir)).owner).toEqual(next.owner)
    await next.release()
  })
})
