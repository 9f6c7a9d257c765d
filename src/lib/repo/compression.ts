/**
 * Archive compression. zstd output is a sequence of independent frames of `chunkSize` input bytes
 * each, compressed concurrently in libuv's thread pool: a standard .zst (zstd -d reads concatenated
 * frames as one stream) that uses every core, as `zstd -T0` does. Node's own multithreaded zstd
 * (ZSTD_c_nbWorkers) crashes its stream wrapper (ERR_STREAM_PUSH_AFTER_EOF on Node 24), and a single
 * zstd stream is limited to one core, which cannot keep up with the baseline on a 2-core machine.
 * Memory is bounded: at most `concurrency` chunks in flight.
 */
import {promisify} from 'node:util'
import {constants, createZstdDecompress, zstdCompress} from 'node:zlib'
import type {Transform} from 'node:stream'

import {UsageError} from '../errors.js'

const compressAsync = promisify(zstdCompress)

export type Compression = {codec: 'zstd'; level: number} | {codec: 'none'}

export function parseCompression(text: string): Compression {
  if (text === 'none') return {codec: 'none'}
  const m = /^zstd(?::(\d{1,2}))?$/.exec(text)
  const level = m ? Number(m[1] ?? 3) : NaN
  if (!m || level < 1 || level > 19) {
    throw new UsageError(`unknown compression ${JSON.stringify(text)}`, {code: 'BAD_COMPRESSION', suggestion: 'Use zstd, zstd:LEVEL (1-19) or none.'})
  }
  return {codec: 'zstd', level}
}

export function archiveExtension(c: Compression): string {
  return c.codec === 'zstd' ? '.zst' : ''
}

export interface CompressOptions {
  chunkSize?: number
  concurrency?: number
}

/** An async-generator transform for stream.pipeline that compresses with zstd in parallel frames. */
export function zstdFrames(level: number, o: CompressOptions = {}) {
  const chunkSize = o.chunkSize ?? 4 * 1024 * 1024
  const concurrency = o.concurrency ?? 3
  const params = {[constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 1}
  return async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const pending: Array<Promise<Buffer>> = []
    let parts: Buffer[] = []
    let length = 0
    const submit = () => {
      const chunk = parts.length === 1 ? parts[0] : Buffer.concat(parts, length)
      parts = []
      length = 0
      pending.push(compressAsync(chunk, {params}))
    }
    for await (const c of source) {
      parts.push(c)
      length += c.length
      if (length >= chunkSize) {
        submit()
        if (pending.length >= concurrency) yield await pending.shift()!
      }
    }
    if (length > 0) submit()
    while (pending.length > 0) yield await pending.shift()!
  }
}

export function decompressor(c: Compression): Transform | null {
  return c.codec === 'zstd' ? createZstdDecompress() : null
}
