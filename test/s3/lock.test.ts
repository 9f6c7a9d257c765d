/**
 * The repository lease lock on S3 (acquireRepoLock over S3Backend, on s3rver), with the semantics it
 * has on disk: a second backup waits up to --lock-wait and exits 12 naming the holder; an expired
 * lease of another host is broken and reported (a live one is not); the heartbeat renews the lease;
 * of two concurrent acquirers exactly one wins.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {hostname, tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {generateData} from '../../src/lib/engine/generate.js'
import {LockedError} from '../../src/lib/errors.js'
import {readAll} from '../../src/lib/repo/backend.js'
import {S3Backend} from '../../src/lib/repo/backends/s3.js'
import {LOCK_KEY} from '../../src/lib/repo/layout.js'
import {acquireRepoLock, type LeaseOwner} from '../../src/lib/repo/lock.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {runCli, type S3rverHandle, startS3rver, unwrap} from '../support/s3.js'

interface Lease {
  owner: LeaseOwner
  token: string
  expiresAt: string
}

/* eslint-disable @typescript-eslint/no-explicit-any */
describe('repository lock on S3', {timeout: 120_000}, () => {
  let s3: S3rverHandle
  let root: string
  let data: string
  let n = 0
  const backends: S3Backend[] = []
  /** A fresh, initialised repository; returns its URL. */
  async function freshRepo(): Promise<string> {
    const url = s3.url(`lock-${++n}/repo`)
    await Repository.init(backend(url), {codec: 'none'})
    return url
  }
  function backend(url: string): S3Backend {
    const b = S3Backend.fromUrl(url)
    backends.push(b)
    return b
  }
  async function lease(url: string): Promise<Lease | null> {
    const b = backend(url)
    if (!(await b.stat(LOCK_KEY))) return null
    return JSON.parse((await readAll(await b.get(LOCK_KEY))).toString('utf8')) as Lease
  }
  async function completeBackups(url: string): Promise<string[]> {
    return (await (await Repository.open(backend(url))).completeBackups()).map((m) => m.id)
  }

  beforeAll(async () => {
    s3 = await startS3rver()
    root = await mkdtemp(join(tmpdir(), 'engram-s3-lock-'))
    data = join(root, 'data')
    await generateData({root: data, spaces: ['default'], episodes: 40, seed: 5, startNs: BigInt(Date.now() - 3600_000) * 1_000_000n, windowNs: 60_000_000_000n, fsync: false})
  })
  afterAll(async () => {
    for (const b of backends) await b.close()
    await s3?.close()
    await rm(root, {recursive: true, force: true})
  })

  it('a second backup waits up to --lock-wait, then exits 12 naming the holder; after release it runs', async () => {
    const url = await freshRepo()
    const holder = await acquireRepoLock(backend(url), {command: 'backup full (test holder)', waitMs: 0})
    const held = await lease(url)
    expect(held?.owner).toEqual({host: hostname(), pid: process.pid, command: 'backup full (test holder)', startedAt: holder.owner.startedAt})
    try {
      const r = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--lock-wait', '2s', '--json'])
      expect(r.code, r.stdout + r.stderr).toBe(12)
      expect(r.ms).toBeGreaterThanOrEqual(2000)
      const err = JSON.parse(r.stdout).error
      expect(err).toMatchObject({code: 'REPO_LOCKED', exitCode: 12, subject: LOCK_KEY, details: {holder: holder.owner, expiresAt: expect.any(String)}})
      expect(err.message).toContain(`is locked by backup full (test holder) (pid ${process.pid} on ${hostname()}, since ${holder.owner.startedAt}`)

      // As text: it says it waits, then names the holder.
      const t = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--lock-wait', '1s'])
      expect(t.code).toBe(12)
      const stderr = unwrap(t.stderr)
      expect(stderr).toContain(`repository is locked by backup full (test holder) (pid ${process.pid} on ${hostname()}); waiting up to 1 s`)
      expect(stderr).toContain(`locked by backup full (test holder) (pid ${process.pid} on ${hostname()}`)
      // The waiters took nothing: the lease is the holder's, and no backup exists.
      expect((await lease(url))?.token).toBe(held?.token)
      expect(await completeBackups(url)).toEqual([])
    } finally {
      await holder.release()
    }
    expect(await lease(url)).toBeNull()
    const ok = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--lock-wait', '0s', '--json'])
    expect(ok.code, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout).brokenLocks).toEqual([])
    expect(await lease(url)).toBeNull()
    expect(await completeBackups(url)).toHaveLength(1)
  })

  it('an expired lease of another host is broken and reported; a live one of another host is not', async () => {
    const url = await freshRepo()
    const stale: Lease = {
      owner: {host: 'other-host.example', pid: 4242, command: 'backup incremental', startedAt: '2026-01-02T03:04:05.000Z'},
      token: 'stale-token',
      expiresAt: new Date(Date.now() - 60_000).toISOString(),
    }
    const b = backend(url)
    await b.put(LOCK_KEY, Buffer.from(JSON.stringify(stale)))
    const r = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--lock-wait', '0s', '--json'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({type: 'full', brokenLocks: [stale.owner]})
    expect(await lease(url)).toBeNull()

    // As text, the warning names the broken holder.
    await b.put(LOCK_KEY, Buffer.from(JSON.stringify(stale)))
    const t = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--lock-wait', '0s'])
    expect(t.code, t.stderr).toBe(0)
    expect(unwrap(t.stderr)).toContain('broke a stale repository lock held by backup incremental (pid 4242 on other-host.example, since 2026-01-02T03:04:05.000Z)')

    // A lease of another host that has not expired is respected (its pid cannot be checked from here).
    const live: Lease = {...stale, token: 'live-token', expiresAt: new Date(Date.now() + 10 * 60_000).toISOString()}
    await b.put(LOCK_KEY, Buffer.from(JSON.stringify(live)))
    const l = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--lock-wait', '1s', '--json'])
    expect(l.code).toBe(12)
    expect(JSON.parse(l.stdout).error).toMatchObject({code: 'REPO_LOCKED', details: {holder: live.owner}})
    expect((await lease(url))?.token).toBe('live-token')
    expect(await completeBackups(url)).toHaveLength(2)
  })

  it('the heartbeat renews the lease while held, so a waiter never sees it expire; release stops it', async () => {
    const url = await freshRepo()
    const lock = await acquireRepoLock(backend(url), {command: 'long job', waitMs: 0, ttlMs: 3000})
    const first = (await lease(url))!
    await sleep(2200)
    const second = (await lease(url))!
    expect(second.token).toBe(first.token)
    expect(Date.parse(second.expiresAt)).toBeGreaterThan(Date.parse(first.expiresAt))
    // Waiting past the first lease's expiry: still held, because it was renewed.
    const t = Date.now()
    const waiter = await acquireRepoLock(backend(url), {command: 'waiter', waitMs: 3500, ttlMs: 3000}).then(
      (l) => l,
      (error: unknown) => error,
    )
    expect(Date.now()).toBeGreaterThan(Date.parse(first.expiresAt))
    expect(waiter).toBeInstanceOf(LockedError)
    expect((waiter as LockedError).exitCode).toBe(12)
    expect((waiter as LockedError).details).toMatchObject({holder: {command: 'long job', pid: process.pid}})
    expect(Date.now() - t).toBeGreaterThanOrEqual(3500)
    expect((await lease(url))!.token).toBe(first.token)

    await lock.release()
    expect(await lease(url)).toBeNull()
    await sleep(1500) // a stopped heartbeat does not bring the lease back
    expect(await lease(url)).toBeNull()
  })

  it('two concurrent acquirers (separate clients): exactly one wins, the other gets exit 12 naming it', async () => {
    for (let round = 0; round < 8; round++) {
      const url = s3.url(`race-${round}/repo`)
      const a = backend(url)
      const b = backend(url)
      const results = await Promise.allSettled([acquireRepoLock(a, {command: 'A', waitMs: 0}), acquireRepoLock(b, {command: 'B', waitMs: 0})])
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{i, lock: r.value}] : []))
      expect(won, `round ${round}`).toHaveLength(1)
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      expect(lost.reason).toBeInstanceOf(LockedError)
      expect((lost.reason as LockedError).details).toMatchObject({holder: {command: won[0].i === 0 ? 'A' : 'B'}})
      expect((await lease(url))?.owner.command).toBe(won[0].i === 0 ? 'A' : 'B')
      await won[0].lock.release()
      expect(await lease(url)).toBeNull()
    }
  })
})
