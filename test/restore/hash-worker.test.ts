/**
 * Hashing on another thread (used by restore for the object and file hashes): every stream's digest
 * equals the reference implementation's over the same bytes (node:crypto for sha256, the BLAKE3
 * library called directly), with streams of both algorithms interleaved, chunks larger than a block,
 * empty chunks and empty streams, and more data in flight than the worker has blocks.
 */
import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'

import type {HashAlgorithm} from '../../src/lib/digest.js'
import {type HashSource, hashSource, InlineHashes, WORKER_HASH_BYTES, WorkerHashes} from '../../src/lib/hash-worker.js'
import {blake3, sha256} from '../support/fixtures.js'

const MiB = 1024 * 1024

/** Feeds `streams` (lists of chunks) interleaved, one chunk of each in turn, and returns their digests. */
async function digestInterleaved(source: HashSource, streams: Buffer[][], algorithms: HashAlgorithm[]): Promise<string[]> {
  const hashes = streams.map((_, k) => source.create(algorithms[k % algorithms.length]))
  const longest = Math.max(...streams.map((s) => s.length))
  for (let i = 0; i < longest; i++) {
    await Promise.all(
      streams.map(async (chunks, k) => {
        if (i < chunks.length) await hashes[k].update(chunks[i])
      }),
    )
  }
  return Promise.all(hashes.map((h) => h.digest()))
}

const reference = (algorithm: HashAlgorithm, chunks: Buffer[]) => (algorithm === 'sha256' ? sha256 : blake3)(Buffer.concat(chunks))

describe('off-thread hashing', () => {
  const streams: Buffer[][] = [
    // Chunks around the 4 MiB block: smaller, larger than one, exactly one, and empty.
    [randomBytes(1000), randomBytes(9 * MiB + 3), Buffer.alloc(0), randomBytes(4 * MiB), randomBytes(77)],
    [randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(5)],
    [],
    [randomBytes(1)],
  ]
  // Stream k uses algorithms[k % 2]: both kinds share the worker's blocks.
  const mixed: HashAlgorithm[] = ['blake3', 'sha256']

  for (const [name, make] of [['worker', () => new WorkerHashes()], ['inline', () => new InlineHashes()]] as const) {
    it(`${name}: interleaved streams of both algorithms digest exactly as the reference does`, async () => {
      const source = make()
      try {
        expect(await digestInterleaved(source, streams, mixed)).toEqual(streams.map((s, k) => reference(mixed[k % 2], s)))
        // The same source keeps working for new streams after others were digested.
        const again = [randomBytes(6 * MiB)]
        expect(await digestInterleaved(source, [again], ['blake3'])).toEqual([reference('blake3', again)])
        expect(await digestInterleaved(source, [again], ['sha256'])).toEqual([reference('sha256', again)])
      } finally {
        await source.close()
      }
    })
  }

  it('a digest taken while other streams still have bytes in the block being filled does not disturb them', async () => {
    const source = new WorkerHashes()
    try {
      const a = source.create('blake3')
      const b = source.create('sha256')
      const partA = randomBytes(100)
      const partB1 = randomBytes(200)
      const partB2 = randomBytes(5 * MiB)
      await a.update(partA)
      await b.update(partB1)
      expect(await a.digest()).toBe(reference('blake3', [partA]))
      await b.update(partB2)
      expect(await b.digest()).toBe(reference('sha256', [partB1, partB2]))
    } finally {
      await source.close()
    }
  })

  it('small jobs hash inline, large ones in a worker', async () => {
    const small = hashSource(WORKER_HASH_BYTES - 1)
    const large = hashSource(WORKER_HASH_BYTES)
    expect(small).toBeInstanceOf(InlineHashes)
    expect(large).toBeInstanceOf(WorkerHashes)
    await small.close()
    await large.close()
  })
})
