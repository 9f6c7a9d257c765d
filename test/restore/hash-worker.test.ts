/**
 * SHA-256 on another thread (used by restore for the object and file hashes): every stream's digest
 * equals node:crypto's over the same bytes, with streams interleaved, chunks larger than a block, empty
 * chunks and empty streams, and more data in flight than the worker has blocks.
 */
import {createHash, randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'

import {InlineSha256, type Sha256Source, sha256Source, WORKER_HASH_BYTES, WorkerSha256} from '../../src/lib/hash-worker.js'

const MiB = 1024 * 1024

/** Feeds `streams` (lists of chunks) interleaved, one chunk of each in turn, and returns their digests. */
async function digestInterleaved(source: Sha256Source, streams: Buffer[][]): Promise<string[]> {
  const hashes = streams.map(() => source.create())
  const longest = Math.max(...streams.map((s) => s.length))
  for (let i = 0; i < longest; i++) {
    await Promise.all(streams.map(async (chunks, k) => {
      if (i < chunks.length) await hashes[k].update(chunks[i])
    }))
  }
  return Promise.all(hashes.map((h) => h.digest()))
}

const expected = (chunks: Buffer[]) => createHash('sha256').update(Buffer.concat(chunks)).digest('hex')

describe('off-thread SHA-256', () => {
  const streams: Buffer[][] = [
    // Chunks around the 4 MiB block: smaller, larger than one, exactly one, and empty.
    [randomBytes(1000), randomBytes(9 * MiB + 3), Buffer.alloc(0), randomBytes(4 * MiB), randomBytes(77)],
    [randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(3 * MiB), randomBytes(5)],
    [],
    [randomBytes(1)],
  ]

  for (const [name, make] of [['worker', () => new WorkerSha256()], ['inline', () => new InlineSha256()]] as const) {
    it(`${name}: interleaved streams digest exactly as node:crypto does`, async () => {
      const source = make()
      try {
        expect(await digestInterleaved(source, streams)).toEqual(streams.map(expected))
        // The same source keeps working for new streams after others were digested.
        const again = [randomBytes(6 * MiB)]
        expect(await digestInterleaved(source, [again])).toEqual([expected(again)])
      } finally {
        await source.close()
      }
    })
  }

  it('a digest taken while other streams still have bytes in the block being filled does not disturb them', async () => {
    const source = new WorkerSha256()
    try {
      const a = source.create()
      const b = source.create()
      const partA = randomBytes(100)
      const partB1 = randomBytes(200)
      const partB2 = randomBytes(5 * MiB)
      await a.update(partA)
      await b.update(partB1)
      expect(await a.digest()).toBe(expected([partA]))
      await b.update(partB2)
      expect(await b.digest()).toBe(expected([partB1, partB2]))
    } finally {
      await source.close()
    }
  })

  it('small jobs hash inline, large ones in a worker', async () => {
    const small = sha256Source(WORKER_HASH_BYTES - 1)
    const large = sha256Source(WORKER_HASH_BYTES)
    expect(small).toBeInstanceOf(InlineSha256)
    expect(large).toBeInstanceOf(WorkerSha256)
    await small.close()
    await large.close()
  })
})
