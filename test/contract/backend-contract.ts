/**
 * The contract every RepositoryBackend must meet (src/lib/repo/backend.ts), as one suite that each
 * backend runs: `describeBackendContract('fs', async () => ({backend, cleanup}))`.
 *
 * Nothing here may assume a filesystem: the suite speaks only keys, Buffers and streams, so an S3
 * backend (a bucket prefix per fixture) can run it unchanged. Each test gets a fresh backend from the
 * factory and calls its cleanup afterwards.
 */
import {createCipheriv, createHash} from 'node:crypto'
import {Readable} from 'node:stream'

import {afterEach, describe, expect, it} from 'vitest'

import {BackendError, openObjectReader, readAll, type RepositoryBackend} from '../../src/lib/repo/backend.js'

export interface BackendFixture {
  backend: RepositoryBackend
  /** Removes everything the fixture created (a directory, a bucket prefix). */
  cleanup(): Promise<void>
}

export type BackendFactory = () => Promise<BackendFixture>

export interface ContractOptions {
  /**
   * Whether the backend serves byte ranges (default true). A backend that cannot (EncryptedBackend:
   * its chunks authenticate only whole) must instead refuse every ranged read with an error, never
   * answer it with wrong bytes.
   */
  rangedReads?: boolean
  /**
   * Whether the *server* replaces an object atomically when several PUTs of one key race (default
   * true: AWS S3, MinIO and Ceph do, and so do our filesystem and memory backends). s3rver 3.7 writes
   * an object's file in place, so racing PUTs can interleave there: a test-server limit, not ours.
   */
  atomicConcurrentPuts?: boolean
  /** Whether the backend has `openWriter` (default false: callers then use `put`). */
  writer?: boolean
}

const MiB = 1024 * 1024

/** Deterministic, incompressible bytes (so no layer can cheat by deduplicating or compressing). */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  // AES-256-CTR keystream keyed by the seed: fast and reproducible.
  const key = createHash('sha256').update(`seed:${seed}`).digest()
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length))
}

/** A stream of `data` in odd-sized chunks, yielding to the event loop between chunks. */
function chunked(data: Buffer, chunkSize = 64 * 1024 + 13): Readable {
  return Readable.from(
    (async function* () {
      for (let at = 0; at < data.length; at += chunkSize) {
        await new Promise((r) => setImmediate(r))
        yield data.subarray(at, Math.min(data.length, at + chunkSize))
      }
    })(),
  )
}

async function getAll(backend: RepositoryBackend, key: string, range?: {offset: number; length?: number}): Promise<Buffer> {
  return readAll(await backend.get(key, range ? {range} : {}))
}

async function keysOf(backend: RepositoryBackend, prefix: string): Promise<string[]> {
  const out: string[] = []
  for await (const o of backend.list(prefix)) out.push(o.key)
  return out
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex')
}

async function expectBackendError(p: Promise<unknown>, kind: BackendError['kind']): Promise<BackendError> {
  let caught: unknown
  try {
    await p
  } catch (error) {
    caught = error
  }
  expect(caught, `expected a BackendError of kind ${kind}`).toBeInstanceOf(BackendError)
  expect((caught as BackendError).kind).toBe(kind)
  return caught as BackendError
}

export function describeBackendContract(name: string, makeBackend: BackendFactory, options: ContractOptions = {}): void {
  describe(`RepositoryBackend contract: ${name}`, () => {
    const fixtures: BackendFixture[] = []
    afterEach(async () => {
      while (fixtures.length > 0) {
        const f = fixtures.pop()!
        await f.backend.close()
        await f.cleanup()
      }
    })
    const fresh = async (): Promise<RepositoryBackend> => {
      const f = await makeBackend()
      fixtures.push(f)
      return f.backend
    }

    it('has a url for messages', async () => {
      const b = await fresh()
      expect(typeof b.url).toBe('string')
      expect(b.url.length).toBeGreaterThan(0)
    })

    it('round-trips a small Buffer byte for byte, and reports what it stored', async () => {
      const b = await fresh()
      const data = Buffer.from(Array.from({length: 256}, (_, i) => i)) // every byte value
      const info = await b.put('objects/small.bin', data)
      expect(info).toMatchObject({key: 'objects/small.bin', size: 256})
      expect(await getAll(b, 'objects/small.bin')).toEqual(data)
      expect(await b.stat('objects/small.bin')).toMatchObject({key: 'objects/small.bin', size: 256})
      // The stored object does not alias the caller's buffer.
      data.fill(0)
      expect((await getAll(b, 'objects/small.bin'))[255]).toBe(255)
    })

    it('stores an empty object', async () => {
      const b = await fresh()
      expect(await b.put('objects/empty', Buffer.alloc(0))).toMatchObject({key: 'objects/empty', size: 0})
      expect(await b.stat('objects/empty')).toMatchObject({key: 'objects/empty', size: 0})
      expect((await getAll(b, 'objects/empty')).length).toBe(0)
      expect(await keysOf(b, 'objects/')).toEqual(['objects/empty'])
    })

    it('round-trips a multi-MiB stream byte for byte', async () => {
      const b = await fresh()
      const data = pseudoRandomBytes(5 * MiB + 12_345, 1)
      const info = await b.put('backups/x/big.tar.zst', chunked(data))
      expect(info).toMatchObject({key: 'backups/x/big.tar.zst', size: data.length})
      expect((await b.stat('backups/x/big.tar.zst'))?.size).toBe(data.length)
      const back = await getAll(b, 'backups/x/big.tar.zst')
      expect(back.length).toBe(data.length)
      expect(sha(back)).toBe(sha(data))
    })

    it.skipIf(options.rangedReads === false)('reads byte ranges: offset+length, offset to the end, across chunk boundaries, clipped at the end', async () => {
      const b = await fresh()
      const data = pseudoRandomBytes(3 * MiB + 77, 2)
      await b.put('r/obj', chunked(data))
      expect(await getAll(b, 'r/obj', {offset: 0, length: 10})).toEqual(data.subarray(0, 10))
      expect(await getAll(b, 'r/obj', {offset: 1000, length: 1})).toEqual(data.subarray(1000, 1001))
      const mid = await getAll(b, 'r/obj', {offset: MiB - 7, length: 2 * MiB + 3})
      expect(mid.length).toBe(2 * MiB + 3)
      expect(sha(mid)).toBe(sha(data.subarray(MiB - 7, 3 * MiB - 4)))
      const tail = await getAll(b, 'r/obj', {offset: data.length - 77})
      expect(tail).toEqual(data.subarray(data.length - 77))
      expect(await getAll(b, 'r/obj', {offset: data.length - 10, length: 100})).toEqual(data.subarray(data.length - 10))
      expect(sha(await getAll(b, 'r/obj', {offset: 0}))).toBe(sha(data))
    })

    it.runIf(options.rangedReads === false)('refuses ranged reads with an error (never wrong bytes) and still serves whole reads', async () => {
      const b = await fresh()
      const data = pseudoRandomBytes(MiB + 77, 2)
      await b.put('r/obj', chunked(data))
      for (const range of [{offset: 0, length: 10}, {offset: 1000}, {offset: 0}]) {
        await expect(getAll(b, 'r/obj', range)).rejects.toThrow(/range/i)
      }
      expect(sha(await getAll(b, 'r/obj'))).toBe(sha(data))
    })

    it('openObjectReader reads an object in order into the caller\'s buffer, in reads of any size, then 0', async () => {
      const b = await fresh()
      const data = pseudoRandomBytes(3 * MiB + 4321, 5)
      await b.put('o/obj', chunked(data))
      const reader = await openObjectReader(b, 'o/obj')
      const back = Buffer.alloc(data.length + 10)
      let at = 0
      // Odd sizes, a 1-byte read, and reads larger than any chunk a backend serves.
      for (const size of [1, 4097, 2 * MiB + 3, 65_536, 3 * MiB]) {
        const n = await reader.read(back, at, Math.min(size, back.length - at))
        expect(n).toBeGreaterThan(0)
        expect(n).toBeLessThanOrEqual(size)
        at += n
        if (at === data.length) break
      }
      while (at < data.length) {
        const n = await reader.read(back, at, back.length - at)
        expect(n).toBeGreaterThan(0)
        at += n
      }
      expect(await reader.read(back, at, 10)).toBe(0)
      expect(at).toBe(data.length)
      expect(sha(back.subarray(0, at))).toBe(sha(data))
      await reader.close()
      await reader.close()
      // An empty object ends at once.
      await b.put('o/empty', Buffer.alloc(0))
      const empty = await openObjectReader(b, 'o/empty')
      expect(await empty.read(back, 0, 100)).toBe(0)
      await empty.close()
      await expectBackendError(openObjectReader(b, 'o/missing'), 'not-found')
      await expectBackendError(openObjectReader(b, 'o'), 'not-found')
    })

    it('openWriter, where declared: nothing is visible before commit; buffers may be reused once a write resolves; abort leaves nothing', async () => {
      const b = await fresh()
      if (options.writer !== true) {
        // Callers fall back to put: a backend without the option must not half-provide it.
        expect(b.openWriter).toBeUndefined()
        return
      }
      expect(typeof b.openWriter).toBe('function')
      const first = pseudoRandomBytes(MiB + 5, 6)
      const second = pseudoRandomBytes(3 * MiB + 1, 7)
      const out = await b.openWriter!('w/obj')
      // One buffer, refilled after each write: what was written before must not change.
      const buf = Buffer.alloc(second.length)
      first.copy(buf)
      await out.write(buf.subarray(0, first.length))
      second.copy(buf)
      await out.write(buf)
      expect(await b.stat('w/obj')).toBeNull()
      expect(await keysOf(b, 'w/')).toEqual([])
      expect(await out.commit()).toMatchObject({key: 'w/obj', size: first.length + second.length})
      expect(sha(await getAll(b, 'w/obj'))).toBe(sha(Buffer.concat([first, second])))

      const dropped = await b.openWriter!('w/dropped')
      await dropped.write(first)
      await dropped.abort()
      await dropped.abort()
      expect(await b.stat('w/dropped')).toBeNull()
      expect(await keysOf(b, 'w/')).toEqual(['w/obj'])
      // list() hides temporaries: none may be left behind either.
      expect(await b.sweepTemporaries?.(0)).toBe(0)

      // An aborted write rejects with the abort's reason itself (an interruption keeps its exit code)
      // and removes the temporary.
      const stop = new AbortController()
      const interrupted = await b.openWriter!('w/interrupted', {signal: stop.signal})
      await interrupted.write(first)
      const reason = new Error('interrupted by a test')
      stop.abort(reason)
      await expect(interrupted.write(first)).rejects.toBe(reason)
      await interrupted.abort()
      expect(await b.stat('w/interrupted')).toBeNull()
      expect(await b.sweepTemporaries?.(0)).toBe(0)

      // ifAbsent: the commit of an existing key fails with kind exists and leaves the object as it was.
      const clash = await b.openWriter!('w/obj', {ifAbsent: true})
      await clash.write(Buffer.from('other'))
      await expectBackendError(clash.commit(), 'exists')
      await clash.abort()
      expect(sha(await getAll(b, 'w/obj'))).toBe(sha(Buffer.concat([first, second])))
      expect(await keysOf(b, 'w/')).toEqual(['w/obj'])
    })

    it('stat returns null for a missing key and for a key that is only a prefix of others', async () => {
      const b = await fresh()
      expect(await b.stat('nothing/here')).toBeNull()
      await b.put('dir/inner/file', Buffer.from('x'))
      expect(await b.stat('dir')).toBeNull()
      expect(await b.stat('dir/inner')).toBeNull()
      expect(await b.stat('dir/inner/file')).toMatchObject({key: 'dir/inner/file', size: 1})
    })

    it('get of a missing key fails with kind not-found (also for a key that is only a prefix of others)', async () => {
      const b = await fresh()
      await expectBackendError(b.get('missing/key'), 'not-found')
      await b.put('dir/inner/file', Buffer.from('x'))
      await expectBackendError(
        b.get('dir/inner').then((s) => readAll(s)),
        'not-found',
      )
    })

    it('lists keys under a prefix in lexical order, with sizes; a prefix is a string prefix, not a directory', async () => {
      const b = await fresh()
      const objects: Record<string, number> = {
        'backups/b/2': 2,
        'backups/a/9': 9,
        'backups/a/1': 1,
        'backups-z': 26,
        'backups/ab': 3,
        'backups/a/10': 10,
        'other/x': 5,
        'backups/a/1x/deeper': 7,
        root: 4,
      }
      for (const [key, size] of Object.entries(objects)) await b.put(key, Buffer.alloc(size, 0x61))
      const listed: Array<{key: string; size: number}> = []
      for await (const o of b.list('backups/')) listed.push({key: o.key, size: o.size})
      expect(listed).toEqual([
        {key: 'backups/a/1', size: 1},
        {key: 'backups/a/10', size: 10},
        {key: 'backups/a/1x/deeper', size: 7},
        {key: 'backups/a/9', size: 9},
        {key: 'backups/ab', size: 3},
        {key: 'backups/b/2', size: 2},
      ])
      expect(await keysOf(b, 'backups/a')).toEqual(['backups/a/1', 'backups/a/10', 'backups/a/1x/deeper', 'backups/a/9', 'backups/ab'])
      expect(await keysOf(b, 'backups/a/1')).toEqual(['backups/a/1', 'backups/a/10', 'backups/a/1x/deeper'])
      expect(await keysOf(b, 'backups')).toEqual(['backups-z', 'backups/a/1', 'backups/a/10', 'backups/a/1x/deeper', 'backups/a/9', 'backups/ab', 'backups/b/2'])
      expect(await keysOf(b, '')).toEqual(Object.keys(objects).sort())
      expect(await keysOf(b, 'nope/')).toEqual([])
      expect(await keysOf(b, 'backups/c')).toEqual([])
    })

    it('delete removes objects and is idempotent (missing keys are not an error)', async () => {
      const b = await fresh()
      await b.put('d/one', Buffer.from('1'))
      await b.put('d/two', Buffer.from('22'))
      await b.put('d/three', Buffer.from('333'))
      await b.delete(['d/one'])
      expect(await b.stat('d/one')).toBeNull()
      await expectBackendError(b.get('d/one'), 'not-found')
      await b.delete(['d/one'])
      await b.delete(['never/existed'])
      await b.delete([])
      await b.delete(['d/two', 'd/missing', 'd/two'])
      expect(await keysOf(b, 'd/')).toEqual(['d/three'])
      expect(await getAll(b, 'd/three')).toEqual(Buffer.from('333'))
    })

    it('ifAbsent put fails with kind exists on an existing key and leaves the object as it was', async () => {
      const b = await fresh()
      await b.put('locks/repository.lock', Buffer.from('first'), {ifAbsent: true})
      const err = await expectBackendError(b.put('locks/repository.lock', Buffer.from('second!'), {ifAbsent: true}), 'exists')
      expect(err.exitCode).toBe(12)
      expect(await getAll(b, 'locks/repository.lock')).toEqual(Buffer.from('first'))
      await expectBackendError(b.put('locks/repository.lock', chunked(Buffer.from('third')), {ifAbsent: true}), 'exists')
      expect(await getAll(b, 'locks/repository.lock')).toEqual(Buffer.from('first'))
      expect(await keysOf(b, 'locks/')).toEqual(['locks/repository.lock'])
      // A plain put still replaces it; after a delete, ifAbsent succeeds again.
      await b.put('locks/repository.lock', Buffer.from('plain'))
      expect(await getAll(b, 'locks/repository.lock')).toEqual(Buffer.from('plain'))
      await b.delete(['locks/repository.lock'])
      await b.put('locks/repository.lock', Buffer.from('again'), {ifAbsent: true})
      expect(await getAll(b, 'locks/repository.lock')).toEqual(Buffer.from('again'))
    })

    it('concurrent ifAbsent puts of one key: exactly one wins, the others fail with kind exists', async () => {
      const b = await fresh()
      const results = await Promise.allSettled(Array.from({length: 8}, (_, i) => b.put('locks/race', Buffer.from(`writer-${i}`), {ifAbsent: true})))
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []))
      expect(won.length).toBe(1)
      for (const r of results) {
        if (r.status === 'rejected') {
          expect(r.reason).toBeInstanceOf(BackendError)
          expect((r.reason as BackendError).kind).toBe('exists')
        }
      }
      expect(await getAll(b, 'locks/race')).toEqual(Buffer.from(`writer-${won[0]}`))
    })

    it('a put whose stream fails midway leaves no object (and no temporary visible in list)', async () => {
      const b = await fresh()
      const first = pseudoRandomBytes(MiB, 3)
      const failing = Readable.from(
        (async function* () {
          yield first.subarray(0, MiB / 2)
          await new Promise((r) => setImmediate(r))
          yield first.subarray(MiB / 2)
          throw new Error('source disk went away')
        })(),
      )
      await expect(b.put('backups/f/archive.tar.zst', failing)).rejects.toThrow()
      expect(await b.stat('backups/f/archive.tar.zst')).toBeNull()
      await expectBackendError(b.get('backups/f/archive.tar.zst'), 'not-found')
      expect(await keysOf(b, '')).toEqual([])
      // The key is still usable afterwards.
      await b.put('backups/f/archive.tar.zst', Buffer.from('ok'), {ifAbsent: true})
      expect(await keysOf(b, '')).toEqual(['backups/f/archive.tar.zst'])
    })

    it('a failed overwrite leaves the previous object intact', async () => {
      const b = await fresh()
      const v1 = pseudoRandomBytes(300_000, 4)
      await b.put('m/manifest.json', v1)
      const failing = Readable.from(
        (async function* () {
          yield Buffer.alloc(100_000, 1)
          throw new Error('boom')
        })(),
      )
      await expect(b.put('m/manifest.json', failing)).rejects.toThrow()
      expect((await b.stat('m/manifest.json'))?.size).toBe(v1.length)
      expect(sha(await getAll(b, 'm/manifest.json'))).toBe(sha(v1))
      expect(await keysOf(b, 'm/')).toEqual(['m/manifest.json'])
    })

    it('an aborted put rejects and leaves no object', async () => {
      const b = await fresh()
      const ac = new AbortController()
      const body = Readable.from(
        (async function* () {
          yield Buffer.alloc(64 * 1024, 2)
          ac.abort(new Error('interrupted'))
          await new Promise((r) => setTimeout(r, 20))
          yield Buffer.alloc(64 * 1024, 3)
        })(),
      )
      await expect(b.put('a/aborted', body, {signal: ac.signal})).rejects.toThrow()
      expect(await b.stat('a/aborted')).toBeNull()
      expect(await keysOf(b, '')).toEqual([])
    })

    it('overwrite replaces atomically: while the new body streams, readers see the whole old object; then the whole new one', async () => {
      const b = await fresh()
      const v1 = pseudoRandomBytes(2 * MiB + 5, 5)
      const v2 = pseudoRandomBytes(MiB + 333, 6)
      await b.put('o/obj', v1)
      let release!: () => void
      const gate = new Promise<void>((r) => (release = r))
      let halfway!: () => void
      const reachedHalfway = new Promise<void>((r) => (halfway = r))
      const body = Readable.from(
        (async function* () {
          yield v2.subarray(0, MiB)
          halfway()
          await gate
          yield v2.subarray(MiB)
        })(),
      )
      const putting = b.put('o/obj', body)
      await reachedHalfway
      await new Promise((r) => setTimeout(r, 50)) // let the backend consume what it was given
      expect((await b.stat('o/obj'))?.size).toBe(v1.length)
      expect(sha(await getAll(b, 'o/obj'))).toBe(sha(v1))
      const during: Array<{key: string; size: number}> = []
      for await (const o of b.list('o/')) during.push({key: o.key, size: o.size})
      expect(during).toEqual([{key: 'o/obj', size: v1.length}])
      release()
      expect(await putting).toMatchObject({key: 'o/obj', size: v2.length})
      expect((await b.stat('o/obj'))?.size).toBe(v2.length)
      expect(sha(await getAll(b, 'o/obj'))).toBe(sha(v2))
      expect(await keysOf(b, 'o/')).toEqual(['o/obj'])
    })

    it.skipIf(options.atomicConcurrentPuts === false)('concurrent overwrites of one key leave exactly one of the bodies, whole', async () => {
      const b = await fresh()
      const bodies = [0, 1, 2, 3].map((i) => pseudoRandomBytes(200_000 + i * 1000, 10 + i))
      await Promise.all(bodies.map((d) => b.put('c/obj', chunked(d, 50_000))))
      const got = await getAll(b, 'c/obj')
      expect(bodies.map(sha)).toContain(sha(got))
      expect((await b.stat('c/obj'))?.size).toBe(got.length)
      expect(await keysOf(b, 'c/')).toEqual(['c/obj'])
    })
  })
}
