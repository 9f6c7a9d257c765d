/**
 * The RepositoryBackend contract (backend-contract.ts) against S3Backend on s3rver, one bucket prefix
 * per test, and against EncryptedBackend over a MemoryBackend (which must keep the whole contract but
 * ranged reads, which it refuses).
 */
import {randomBytes} from 'node:crypto'

import {afterAll, describe, expect, it} from 'vitest'

import {readAll} from '../../src/lib/repo/backend.js'
import {MemoryBackend} from '../../src/lib/repo/backends/memory.js'
import {S3Backend} from '../../src/lib/repo/backends/s3.js'
import {EncryptedBackend} from '../../src/lib/repo/crypto.js'
import {type S3rverHandle, startS3rver} from '../support/s3.js'
import {describeBackendContract, pseudoRandomBytes} from './backend-contract.js'

let s3: Promise<S3rverHandle> | undefined
const server = () => (s3 ??= startS3rver())
afterAll(async () => {
  if (s3) await (await s3).close()
})

let fixtureNo = 0
async function s3Fixture(partSize = '5MiB') {
  const h = await server()
  const prefix = `contract-${process.pid}-${++fixtureNo}/`
  const backend = S3Backend.fromUrl(h.url(prefix, {partSize, queueSize: 2}))
  return {
    backend,
    async cleanup() {
      // The backend is closed by the suite; sweep the prefix with a fresh client.
      const sweeper = S3Backend.fromUrl(h.url(prefix))
      const keys: string[] = []
      for await (const o of sweeper.list('')) keys.push(o.key)
      await sweeper.delete(keys)
      await sweeper.close()
    },
  }
}

describeBackendContract('S3Backend (s3rver, partSize 5MiB: multi-MiB streams go multipart)', () => s3Fixture(), {atomicConcurrentPuts: false})

describeBackendContract('EncryptedBackend(MemoryBackend)', async () => ({backend: new EncryptedBackend(new MemoryBackend(), randomBytes(32)), cleanup: async () => {}}), {rangedReads: false})

describe('S3Backend specifics', () => {
  it('keeps every object under its prefix, and two prefixes of one bucket do not see each other', async () => {
    const h = await server()
    const a = S3Backend.fromUrl(h.url(`iso-a-${process.pid}/`))
    const b = S3Backend.fromUrl(h.url(`iso-a-${process.pid}-b/`))
    try {
      await a.put('x', Buffer.from('a'))
      await b.put('x', Buffer.from('bb'))
      const inA: string[] = []
      for await (const o of a.list('')) inA.push(o.key)
      expect(inA).toEqual(['x'])
      expect((await readAll(await b.get('x'))).toString()).toBe('bb')
      expect(a.url).toBe(`s3://bk/iso-a-${process.pid}/?endpoint=${h.endpoint}&region=us-east-1`)
    } finally {
      await a.delete(['x'])
      await b.delete(['x'])
      await a.close()
      await b.close()
    }
  })

  it('a streamed put larger than partSize is stored as a multipart upload, and none is left open', async () => {
    const h = await server()
    const prefix = `mp-${process.pid}/`
    const backend = S3Backend.fromUrl(h.url(prefix, {partSize: '5MiB', queueSize: 2}))
    try {
      const data = pseudoRandomBytes(11 * 1024 * 1024 + 5, 42)
      const {Readable} = await import('node:stream')
      h.resetCounts()
      const info = await backend.put('big', Readable.from([data.subarray(0, 6_000_000), data.subarray(6_000_000)]))
      expect(info).toEqual({key: 'big', size: data.length})
      // 11 MiB in 5 MiB parts: create, three parts, complete; no single PutObject.
      expect(h.log.filter((r) => r.key === `${prefix}big`).map((r) => r.kind)).toEqual(['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload'])
      expect((await readAll(await backend.get('big'))).equals(data)).toBe(true)
      expect(await h.openUploads()).toEqual([])
    } finally {
      await backend.delete(['big'])
      await backend.close()
    }
  })

  it('a missing bucket is a BackendError of kind not-found on list and get (a HEAD cannot tell it from a missing key)', async () => {
    const h = await server()
    const backend = S3Backend.fromUrl(h.url('x/').replace('s3://bk/', 's3://no-such-bucket/'))
    try {
      expect(await backend.stat('k')).toBeNull()
      await expect((async () => {
        for await (const _ of backend.list('')) void _
      })()).rejects.toMatchObject({kind: 'not-found'})
      await expect(backend.get('k')).rejects.toMatchObject({kind: 'not-found'})
    } finally {
      await backend.close()
    }
  })
})
