/**
 * Writes one space's captured byte ranges as a standard tar archive (ustar headers from the `tar`
 * package, so `zstd -dc | tar -t` lists it), compressed and hashed while it streams to the backend.
 * Nothing is staged on local disk and memory is bounded by the compression window.
 */
import {createHash} from 'node:crypto'
import type {FileHandle} from 'node:fs/promises'
import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {Header} from 'tar'

import type {RepositoryBackend} from '../repo/backend.js'
import {type Compression, zstdFrames} from '../repo/compression.js'

export interface ArchiveEntry {
  path: string
  handle: FileHandle
  offset: number
  length: number
  mtime: Date
  /** Filled while streaming: sha256 of the entry's bytes. */
  sha256?: string
}

const BLOCK = 512
const CHUNK = 1024 * 1024

export function tarHeader(path: string, size: number, mtime: Date, mode = 0o600): Buffer {
  const h = new Header({path, mode, size, mtime, type: 'File', uid: 0, gid: 0, uname: '', gname: ''})
  const buf = Buffer.alloc(BLOCK)
  h.encode(buf, 0)
  if (h.needPax) throw new Error(`tar path too long: ${path}`)
  return buf
}

async function* tarStream(entries: ArchiveEntry[], onBytes: (n: number) => void, signal?: AbortSignal): AsyncGenerator<Buffer> {
  for (const e of entries) {
    yield tarHeader(e.path, e.length, e.mtime)
    const hash = createHash('sha256')
    let done = 0
    while (done < e.length) {
      signal?.throwIfAborted()
      // A fresh buffer per chunk: downstream stages may still hold the previous one.
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, e.length - done))
      const {bytesRead} = await e.handle.read(buf, 0, buf.length, e.offset + done)
      if (bytesRead === 0) throw new Error(`${e.path}: file ended at ${e.offset + done}, expected ${e.offset + e.length}`)
      const chunk = bytesRead === buf.length ? buf : buf.subarray(0, bytesRead)
      hash.update(chunk)
      done += bytesRead
      onBytes(bytesRead)
      yield chunk
    }
    e.sha256 = hash.digest('hex')
    const pad = (BLOCK - (e.length % BLOCK)) % BLOCK
    if (pad) yield Buffer.alloc(pad)
  }
  yield Buffer.alloc(BLOCK * 2)
}

export interface WrittenArchive {
  key: string
  size: number
  sha256: string
  uncompressedSize: number
}

export async function writeArchive(
  backend: RepositoryBackend,
  key: string,
  entries: ArchiveEntry[],
  compression: Compression,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<WrittenArchive> {
  let uncompressedSize = 0
  let size = 0
  const hash = createHash('sha256')
  const body = new PassThrough({highWaterMark: 1024 * 1024})
  const abort = new AbortController()
  const onAbort = () => abort.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, {once: true})
  const stages: Array<(src: AsyncIterable<Buffer>) => AsyncIterable<Buffer>> = [
    async function* count(src) {
      for await (const c of src) {
        uncompressedSize += c.length
        yield c
      }
    },
  ]
  if (compression.codec === 'zstd') stages.push(zstdFrames(compression.level))
  stages.push(async function* hashOut(src) {
    for await (const c of src) {
      hash.update(c)
      size += c.length
      yield c
    }
  })
  try {
    const produce = pipeline(Readable.from(tarStream(entries, onBytes, abort.signal)), ...(stages as [typeof stages[0]]), body, {signal: abort.signal})
    const consume = backend.put(key, body, {signal: abort.signal}).catch((error) => {
      abort.abort(error)
      throw error
    })
    const [, put] = await Promise.all([produce.catch((error) => {
      body.destroy(error)
      throw error
    }), consume])
    if (put.size !== size) throw new Error(`${key}: stored ${put.size} bytes, wrote ${size}`)
    return {key, size, sha256: hash.digest('hex'), uncompressedSize}
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}
