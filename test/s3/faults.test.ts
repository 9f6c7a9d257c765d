/**
 * S3 under faults, through a fault-injecting proxy in front of s3rver:
 *  - transient faults (500, 503 SlowDown, connection resets before and during responses) spread over
 *    a backup and a restore: both succeed, the proxy counts show every fault was retried, and the
 *    restore is byte-identical;
 *  - persistent faults on the archive key: the backup fails cleanly with exit 14, writes no manifest,
 *    lists nothing, leaves no object under backups/ and no multipart upload open;
 *  - a stalled server: calls fail within a bounded time (S3Backend with a short request timeout).
 */
import {createHash} from 'node:crypto'
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, relative} from 'node:path'
import {Readable} from 'node:stream'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {generateData, type GenerateResult} from '../../src/lib/engine/generate.js'
import {BackendError, readAll} from '../../src/lib/repo/backend.js'
import {S3Backend} from '../../src/lib/repo/backends/s3.js'
import {pseudoRandomBytes} from '../contract/backend-contract.js'
import {type Fault, type FaultProxy, type ProxiedRequest, runCli, type S3rverHandle, startFaultProxy, startS3rver} from '../support/s3.js'

const MiB = 1024 * 1024
const MS = 1_000_000n
const ARCHIVE = /\/backups\/[^/]+\/[^/]+\.tar\.zst$/
const isArchive = (r: ProxiedRequest) => ARCHIVE.test(`/${r.key}`)

async function files(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const walk = async (d: string) => {
    for (const e of await readdir(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else out.set(relative(dir, p), createHash('sha256').update(await readFile(p)).digest('hex'))
    }
  }
  await walk(dir)
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)))
}

/* eslint-disable @typescript-eslint/no-explicit-any */
describe('S3 under injected faults', {timeout: 180_000}, () => {
  let s3: S3rverHandle
  let proxy: FaultProxy
  let root: string
  let data: string
  let gen: GenerateResult[]

  async function objectsUnder(prefix: string): Promise<string[]> {
    const b = S3Backend.fromUrl(s3.url(prefix)) // straight to s3rver, not through the proxy
    const keys: string[] = []
    for await (const o of b.list('')) keys.push(o.key)
    await b.close()
    return keys
  }

  beforeAll(async () => {
    s3 = await startS3rver()
    proxy = await startFaultProxy(s3)
    root = await mkdtemp(join(tmpdir(), 'engram-s3-faults-'))
    data = join(root, 'data')
    const start = BigInt(Date.now() - 2 * 3600_000) * MS
    // "default" compresses to about 9 MiB: two 5 MiB parts. "tenant-a" is one small PUT.
    gen = [
      await generateData({root: data, spaces: ['default'], episodes: 0, bytesPerSpace: 11 * MiB, seed: 3, startNs: start, windowNs: 3600_000n * MS, fsync: false}),
      await generateData({root: data, spaces: ['tenant-a'], episodes: 0, bytesPerSpace: 256 * 1024, seed: 4, startNs: start, windowNs: 3600_000n * MS, fsync: false}),
    ]
  })
  afterAll(async () => {
    await proxy?.close()
    await s3?.close()
    await rm(root, {recursive: true, force: true})
  })

  it('transient faults spread over a backup and a restore: both succeed after retries, the restore is byte-identical', async () => {
    const url = proxy.url('transient/repo', {partSize: '5MiB', queueSize: 2})
    proxy.setFault(() => 'pass')
    expect((await runCli(['repo', 'init', '--repo', url, '--json'])).code).toBe(0)

    // One fault on the first attempt of each of these; every retry passes.
    const plan: Array<[string, (r: ProxiedRequest) => boolean, Exclude<Fault, 'pass'>]> = [
      ['first HEAD (lock)', (r) => r.kind === 'HeadObject' && r.nOfKind === 1, 'slowdown503'],
      ['first listing', (r) => r.kind === 'ListObjectsV2' && r.nOfKind === 1, 'error500'],
      ['CreateMultipartUpload', (r) => r.kind === 'CreateMultipartUpload' && r.nOfKind === 1, 'slowdown503'],
      ['part 1, first attempt', (r) => r.kind === 'UploadPart' && r.query.get('partNumber') === '1' && !seen.has('p1'), 'reset-request'],
      ['part 2, first attempt', (r) => r.kind === 'UploadPart' && r.query.get('partNumber') === '2' && !seen.has('p2'), 'error500'],
      ['CompleteMultipartUpload', (r) => r.kind === 'CompleteMultipartUpload' && r.nOfKind === 1, 'error500'],
      ['small archive PUT', (r) => r.kind === 'PutObject' && isArchive(r) && !seen.has('small'), 'reset-request'],
      ['manifest PUT', (r) => r.kind === 'PutObject' && r.key.endsWith('/manifest.json') && !seen.has('manifest'), 'slowdown503'],
    ]
    const seen = new Set<string>()
    const injected: string[] = []
    proxy.resetCounts()
    proxy.setFault((r) => {
      for (const [name, match, fault] of plan) {
        if (!injected.includes(name) && match(r)) {
          injected.push(name)
          if (name.startsWith('part 1')) seen.add('p1')
          if (name.startsWith('part 2')) seen.add('p2')
          if (name.startsWith('small')) seen.add('small')
          if (name.startsWith('manifest')) seen.add('manifest')
          return fault
        }
      }
      return 'pass'
    })
    const backup = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--json'])
    expect(backup.code, backup.stdout + backup.stderr).toBe(0)
    const full = JSON.parse(backup.stdout)
    expect(full).toMatchObject({type: 'full', totals: {files: 2, records: gen[0].episodes + gen[1].episodes}})
    expect(injected.sort()).toEqual(plan.map(([n]) => n).sort())
    // Every fault cost exactly one extra request of its kind: the SDK retried each one.
    expect(proxy.faults).toEqual({'slowdown503': 3, error500: 3, 'reset-request': 2})
    expect(proxy.requests.CreateMultipartUpload).toBe(2)
    expect(proxy.requests.CompleteMultipartUpload).toBe(2)
    expect(proxy.requests.UploadPart).toBe(2 + 2)
    expect(proxy.log.filter((r) => r.kind === 'PutObject' && ARCHIVE.test(`/${r.key}`)).map((r) => r.fault)).toEqual(['reset-request', 'pass'])
    expect(proxy.log.filter((r) => r.kind === 'PutObject' && r.key.endsWith('/manifest.json')).map((r) => r.fault)).toEqual(['slowdown503', 'pass'])
    expect(await s3.openUploads()).toEqual([])

    // Restore: faults on the config read, the manifest read, and the archive reads — before the
    // response (500, reset) and in the middle of the body.
    const restorePlan: Array<[string, (r: ProxiedRequest) => boolean, Exclude<Fault, 'pass'>]> = [
      ['config read', (r) => r.kind === 'GetObject' && r.key.endsWith('engram-ops-repo.json'), 'error500'],
      ['manifest read', (r) => r.kind === 'GetObject' && r.key.endsWith('/manifest.json'), 'reset-request'],
      ['big archive read, mid-body', (r) => r.kind === 'GetObject' && r.key.endsWith('/default.tar.zst'), 'reset-response'],
      ['small archive read', (r) => r.kind === 'GetObject' && r.key.endsWith('/tenant-a.tar.zst'), 'slowdown503'],
    ]
    const injectedR: string[] = []
    proxy.resetCounts()
    proxy.setFault((r) => {
      for (const [name, match, fault] of restorePlan) {
        if (!injectedR.includes(name) && match(r)) {
          injectedR.push(name)
          return fault
        }
      }
      return 'pass'
    })
    const to = join(root, 'restored')
    const restore = await runCli(['restore', '--latest', '--repo', url, '--to', to, '--json'])
    expect(restore.code, restore.stdout + restore.stderr).toBe(0)
    expect(injectedR.sort()).toEqual(restorePlan.map(([n]) => n).sort())
    expect(proxy.faults).toEqual({error500: 1, 'reset-request': 1, 'reset-response': 1, slowdown503: 1})
    expect(proxy.log.filter((r) => r.kind === 'GetObject' && r.key.endsWith('/default.tar.zst')).map((r) => r.fault)).toEqual(['reset-response', 'pass'])
    const want = await files(data)
    const got = await files(to)
    expect(got.size).toBe(2)
    expect([...got]).toEqual([...got.keys()].map((k) => [k, want.get(k)]))

    // Every read of the big archive is cut mid-body: the restore gives up after its resumes with
    // exit 14 (the store is failing), not 15 (the archive is fine), and creates no target.
    proxy.resetCounts()
    proxy.setFault((r) => (r.kind === 'GetObject' && r.key.endsWith('/default.tar.zst') ? 'reset-response' : 'pass'))
    const to2 = join(root, 'restored-never')
    const failed = await runCli(['restore', '--latest', '--repo', url, '--to', to2, '--json'])
    expect(failed.code, failed.stdout + failed.stderr).toBe(14)
    expect(JSON.parse(failed.stdout).error).toMatchObject({code: 'BACKEND_TRANSIENT', exitCode: 14, subject: `backups/${full.id}/default.tar.zst`})
    expect(proxy.faultsOn('GetObject', 'reset-response')).toBe(4) // the first read and three resumes
    expect(await readdir(root)).not.toContain('restored-never')
    expect((await readdir(root)).filter((n) => n.includes('engram-ops-restore'))).toEqual([])
    proxy.setFault(() => 'pass')
  })

  it('persistent faults on the archive key: the backup fails with exit 14, leaves no manifest, no object, no open upload', async () => {
    const url = proxy.url('persistent/repo', {partSize: '5MiB', queueSize: 2})
    proxy.setFault(() => 'pass')
    expect((await runCli(['repo', 'init', '--repo', url, '--json'])).code).toBe(0)

    // (a) Every request to the big archive's key fails: the multipart upload cannot even start.
    proxy.resetCounts()
    proxy.setFault((r) => (r.key.endsWith('/default.tar.zst') ? 'error500' : 'pass'))
    const a = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--json'])
    expect(a.code, a.stdout + a.stderr).toBe(14)
    const errA = JSON.parse(a.stdout).error
    expect(errA).toMatchObject({code: 'BACKEND_TRANSIENT', exitCode: 14})
    expect(errA.message).toMatch(/default\.tar\.zst/)
    // The SDK tried five times (maxAttempts 5), then gave up.
    expect(proxy.log.filter((r) => r.key.endsWith('/default.tar.zst')).map((r) => `${r.kind}:${r.fault}`)).toEqual(Array(5).fill('CreateMultipartUpload:error500'))

    // (b) The upload starts but every part's connection is reset: parts retried, then the upload is aborted.
    proxy.resetCounts()
    proxy.setFault((r) => (r.kind === 'UploadPart' && r.key.endsWith('/default.tar.zst') ? 'reset-request' : 'pass'))
    const b = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--json'])
    expect(b.code, b.stdout + b.stderr).toBe(14)
    expect(JSON.parse(b.stdout).error).toMatchObject({code: 'BACKEND_TRANSIENT', exitCode: 14})
    expect(proxy.requests.CreateMultipartUpload).toBe(1)
    expect(proxy.faultsOn('UploadPart', 'reset-request')).toBeGreaterThanOrEqual(5)
    expect(proxy.requests.AbortMultipartUpload).toBe(1)
    expect(proxy.requests.CompleteMultipartUpload ?? 0).toBe(0)

    // Nothing was left behind: no manifest, no object under backups/, no upload open, no lock.
    proxy.setFault(() => 'pass')
    expect(await objectsUnder('persistent/repo/')).toEqual(['engram-ops-repo.json'])
    expect(await s3.openUploads()).toEqual([])
    const list = await runCli(['backup', 'list', '--repo', url, '--json'])
    expect(list.code).toBe(0)
    expect(JSON.parse(list.stdout)).toEqual({backups: [], incomplete: [], warnings: []})

    // With the faults gone, the next backup succeeds.
    const ok = await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--json'])
    expect(ok.code, ok.stderr).toBe(0)
  })

  it('a stalled server: every call fails within a bounded time (short request timeout, two attempts)', async () => {
    const prefix = 'stall/'
    const direct = S3Backend.fromUrl(s3.url(prefix))
    await direct.put('present', Buffer.from('here'))
    proxy.resetCounts()
    proxy.setFault(() => 'stall')
    const backend = S3Backend.fromUrl(proxy.url(prefix, {partSize: '5MiB', queueSize: 1}), {requestTimeoutMs: 400, maxAttempts: 2})
    const bounded = async (what: string, p: () => Promise<unknown>) => {
      const t = Date.now()
      let caught: unknown
      try {
        await p()
      } catch (error) {
        caught = error
      }
      const ms = Date.now() - t
      expect(caught, `${what} must fail`).toBeInstanceOf(BackendError)
      expect((caught as BackendError).kind, what).toBe('transient')
      expect((caught as BackendError).exitCode).toBe(14)
      expect(ms, `${what} took ${ms} ms`).toBeLessThan(8000)
      return ms
    }
    try {
      await bounded('stat', () => backend.stat('present'))
      await bounded('get', () => backend.get('present').then(readAll))
      await bounded('list', async () => {
        for await (const _ of backend.list('')) void _
      })
      await bounded('put (buffer)', () => backend.put('small', Buffer.from('x')))
      // Each stalled call was attempted twice (maxAttempts 2), then given up.
      expect(proxy.requests).toEqual({HeadObject: 2, GetObject: 2, ListObjectsV2: 2, PutObject: 2})
      expect(proxy.faults).toEqual({stall: 8})
      // Only the parts stall: the multipart upload fails in bounded time and is aborted.
      proxy.resetCounts()
      proxy.setFault((r) => (r.kind === 'UploadPart' ? 'stall' : 'pass'))
      await bounded('put (multipart stream)', () => backend.put('big', Readable.from([pseudoRandomBytes(6 * MiB, 9)])))
      expect(proxy.requests).toMatchObject({CreateMultipartUpload: 1, UploadPart: 2, AbortMultipartUpload: 1})
      expect(await s3.openUploads()).toEqual([])
    } finally {
      proxy.setFault(() => 'pass')
      await backend.close()
      await direct.delete(['present'])
      await direct.close()
    }
  })
})
