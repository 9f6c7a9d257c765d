/**
 * How restore reads an archive without leaving garbage for V8: zstdUnframes frees each frame's output
 * once the consumer asks for the next one, and readTar copies the part of a chunk it still needs (a
 * header cut by a chunk boundary) before it asks for the next chunk.
 */
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import type {ByteReader} from '../../src/lib/repo/backend.js'
import {FRAME_SIZE, FrameCompressor, zstdUnframes} from '../../src/lib/repo/compression.js'
import {readTar} from '../../src/lib/restore/tar-reader.js'
import {pseudoRandomBytes} from '../contract/backend-contract.js'

function readerOf(data: Buffer): ByteReader {
  let at = 0
  return {
    async read(dst, offset, length) {
      const n = Math.min(length, data.length - at, 100_003) // odd read sizes, as a store may give
      data.copy(dst, offset, at, at + n)
      at += n
      return n
    },
  }
}

describe('zstdUnframes', () => {
  it('returns the frames in order, and frees each one when the next is asked for', async () => {
    // Three full frames and a short one, with data that does not compress to nothing.
    const data = pseudoRandomBytes(3 * FRAME_SIZE + 12_345, 9)
    const compressor = new FrameCompressor(1)
    const parts: Buffer[] = []
    try {
      for (let at = 0; at < data.length; at += FRAME_SIZE) parts.push(...(await compressor.compress(data.subarray(at, at + FRAME_SIZE))))
    } finally {
      compressor.close()
    }
    const frames = zstdUnframes(2)(readerOf(Buffer.concat(parts)))
    const copies: Buffer[] = []
    let previous: Buffer | null = null
    for await (const frame of frames) {
      // The frame before this one was emptied as this one was asked for: its memory is freed.
      if (previous) expect(previous.length).toBe(0)
      copies.push(Buffer.from(frame))
      previous = frame
    }
    expect(copies.map((c) => c.length)).toEqual([FRAME_SIZE, FRAME_SIZE, FRAME_SIZE, 12_345])
    expect(Buffer.concat(copies).equals(data)).toBe(true)
  })
})

describe('FrameCompressor.release', () => {
  it('frees a zlib output buffer only once zlib has left it and every piece cut from it was released', async () => {
    // Compressible data: several frames' output fits in one of zlib's buffers, so frames share them.
    const frames = Array.from({length: 6}, (_, i) => Buffer.concat([pseudoRandomBytes(FRAME_SIZE / 4, 40 + i), Buffer.alloc((FRAME_SIZE * 3) / 4, i)]))
    const compressor = new FrameCompressor(1)
    const outputs: Buffer[][] = []
    try {
      for (const f of frames) outputs.push(await compressor.compress(f))
    } finally {
      compressor.close()
    }
    const copies = outputs.map((pieces) => Buffer.concat(pieces))
    const zlibBuffers = [...new Set(outputs.flat().map((p) => p.buffer))].filter((ab) => ab.byteLength > Buffer.poolSize)
    // Frames share buffers (else this test would not test the sharing), and zlib left some behind.
    expect(zlibBuffers.length).toBeGreaterThan(1)
    expect(zlibBuffers.length).toBeLessThan(frames.length)
    // Release the first half of the frames: pieces of the others, also in shared buffers, stay intact.
    for (const pieces of outputs.slice(0, 3)) for (const p of pieces) compressor.release(p)
    for (const [i, pieces] of outputs.entries()) {
      if (i >= 3) expect(Buffer.concat(pieces).equals(copies[i]), `frame ${i}`).toBe(true)
    }
    const freed = () => zlibBuffers.filter((ab) => ab.byteLength === 0).length
    const freedAfterHalf = freed()
    // Release the rest: every buffer zlib has left is freed; the one it would write next is not.
    for (const pieces of outputs.slice(3)) for (const p of pieces) compressor.release(p)
    expect(freed()).toBe(zlibBuffers.length - 1)
    expect(zlibBuffers.at(-1)!.byteLength).toBeGreaterThan(0)
    expect(freedAfterHalf).toBeLessThan(freed())
    // What was compressed decompresses to the input (checked on the copies taken before any release).
    const unframed: Buffer[] = []
    for await (const f of zstdUnframes(2)(readerOf(Buffer.concat(copies)))) unframed.push(Buffer.from(f))
    expect(Buffer.concat(unframed).equals(Buffer.concat(frames))).toBe(true)
  })
})

describe('readTar', () => {
  it('reads entries whose headers are cut by chunk boundaries from a source that frees each chunk as the next is asked for', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'engram-ops-frames-'))
    try {
      const sizes = [0, 1, 511, 512, 513, 70_000, 3]
      const files = sizes.map((size, i) => ({name: `f${i}`, data: pseudoRandomBytes(size, 20 + i)}))
      for (const f of files) writeFileSync(join(dir, f.name), f.data)
      const tarBytes = execFileSync('tar', ['--format=ustar', '-cf', '-', '-C', dir, ...files.map((f) => f.name)], {maxBuffer: 1 << 24})
      // 700-byte chunks, each with an ArrayBuffer of its own that is detached (emptied) when the
      // reader asks for the next chunk, as zstdUnframes does with its frames.
      const source = (async function* () {
        for (let at = 0; at < tarBytes.length; at += 700) {
          const piece = tarBytes.subarray(at, at + 700)
          const own = Buffer.from(new ArrayBuffer(Math.max(piece.length, 8193)), 0, piece.length)
          piece.copy(own)
          yield own
          own.buffer.transfer(0)
        }
      })()
      const seen: Array<{path: string; data: Buffer}> = []
      for await (const entry of readTar(source)) {
        const chunks: Buffer[] = []
        for await (const c of entry.body) chunks.push(Buffer.from(c)) // copied before asking for more
        seen.push({path: entry.path, data: Buffer.concat(chunks)})
      }
      expect(seen.map((s) => s.path)).toEqual(files.map((f) => f.name))
      for (const [i, f] of files.entries()) expect(seen[i].data.equals(f.data), f.name).toBe(true)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
