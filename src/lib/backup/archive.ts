/**
 * Writes one space's captured byte ranges as a standard tar archive (ustar headers from the `tar`
 * package, so `zstd -dc | tar -t` lists it), compressed and hashed while it streams to the backend.
 * Nothing is staged on local disk and memory is bounded by the compression window.
 */
import type {FileHandle} from 'node:fs/promises'
import {PassThrough} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {Header} from 'tar/header'

import {createHasher, type HashAlgorithm} from '../digest.js'
import type {ObjectInfo, RepositoryBackend} from '../repo/backend.js'
import {Pool} from '../pool.js'
import {type Compression, FRAME_CONCURRENCY, FRAME_SIZE, FrameCompressor} from '../repo/compression.js'

export interface ArchiveEntry {
  path: string
  handle: FileHandle
  offset: number
  length: number
  mtime: Date
}

const BLOCK = 512

export function tarHeader(path: string, size: number, mtime: Date, mode = 0o600): Buffer {
  const h = new Header({path, mode, size, mtime, type: 'File', uid: 0, gid: 0, uname: '', gname: ''})
  const buf = Buffer.alloc(BLOCK)
  h.encode(buf, 0)
  if (h.needPax) throw new Error(`tar path too long: ${path}`)
  return buf
}

/** A piece of the tar stream in a pooled buffer; `release` hands the buffer back once it is consumed. */
interface Frame {
  data: Buffer
  release: () => void
}

/**
 * The tar stream of `entries`, cut into frames of the pool's buffer size: file bytes are read straight
 * into the frame that will be compressed (no intermediate chunk). The manifest's hash of each file was
 * taken by the scan (pass 1) from the same descriptor; WAL files are append-only, and a file changed in
 * place between the passes would be caught by restore and level-3 verification, not here.
 */
async function* tarFrames(entries: ArchiveEntry[], pool: Pool<Buffer>, frameSize: number, onBytes: (n: number) => void, signal?: AbortSignal): AsyncGenerator<Frame> {
  let frame = await pool.acquire()
  let used = 0
  const emit = (): Frame => {
    const b = frame
    return {data: b.subarray(0, used), release: () => pool.release(b)}
  }
  // Zero bytes (padding, the end-of-archive blocks); returns frames that filled up.
  async function* zeros(n: number): AsyncGenerator<Frame> {
    while (n > 0) {
      const k = Math.min(n, frameSize - used)
      frame.fill(0, used, used + k)
      used += k
      n -= k
      if (used === frameSize) {
        yield emit()
        frame = await pool.acquire()
        used = 0
      }
    }
  }
  for (const e of entries) {
    // `used` is a multiple of 512 between entries and the frame size is too: a header never straddles.
    tarHeader(e.path, e.length, e.mtime).copy(frame, used)
    used += BLOCK
    if (used === frameSize) {
      yield emit()
      frame = await pool.acquire()
      used = 0
    }
    let done = 0
    while (done < e.length) {
      signal?.throwIfAborted()
      const want = Math.min(frameSize - used, e.length - done)
      const {bytesRead} = await e.handle.read(frame, used, want, e.offset + done)
      if (bytesRead === 0) throw new Error(`${e.path}: file ended at ${e.offset + done}, expected ${e.offset + e.length}`)
      used += bytesRead
      done += bytesRead
      onBytes(bytesRead)
      if (used === frameSize) {
        yield emit()
        frame = await pool.acquire()
        used = 0
      }
    }
    yield* zeros((BLOCK - (e.length % BLOCK)) % BLOCK)
  }
  yield* zeros(BLOCK * 2)
  if (used > 0) yield emit()
  else pool.release(frame)
}

/** A piece of the archive as stored; `release` says it was written and its memory may go. */
interface Piece {
  data: Buffer
  release: () => void
}

function compressStage(compressors: Pool<FrameCompressor>) {
  return async function* (frames: AsyncIterable<Frame>): AsyncGenerator<Piece> {
    // Frames are compressed by whichever compressor is free (several archives may share them) and
    // come out in order; at most FRAME_CONCURRENCY of this archive's frames are pending.
    const pending: Array<Promise<Piece[]>> = []
    for await (const f of frames) {
      const compressor = await compressors.acquire()
      const p = compressor
        .compress(f.data)
        .then((pieces) => pieces.map((data) => ({data, release: () => compressor.release(data)})))
        .finally(() => {
          f.release()
          compressors.release(compressor)
        })
      // It may reject while an older frame is awaited: handled when its turn comes, never unhandled.
      p.catch(() => {})
      pending.push(p)
      if (pending.length >= FRAME_CONCURRENCY) yield* await pending.shift()!
    }
    while (pending.length > 0) yield* await pending.shift()!
  }
}

async function* copyStage(frames: AsyncIterable<Frame>): AsyncGenerator<Piece> {
  for await (const f of frames) {
    yield {data: Buffer.from(f.data), release: () => {}}
    f.release()
  }
}

/**
 * Writes the pieces through the backend's writer (a file): each piece is released once written, so
 * node:zlib's output buffers are freed as they are used up instead of waiting for a full garbage
 * collection (47 per 1 GiB backup before; see FrameCompressor).
 */
async function writeFromBuffers(backend: RepositoryBackend, key: string, pieces: AsyncIterable<Piece>, signal: AbortSignal): Promise<ObjectInfo> {
  const out = await backend.openWriter!(key, {signal})
  try {
    for await (const p of pieces) {
      await out.write(p.data)
      p.release()
    }
    return await out.commit()
  } catch (error) {
    await out.abort()
    throw error
  }
}

/**
 * Streams the pieces into `put`, for backends that cannot say when they are done with a buffer (an S3
 * upload gathers parts): their memory is left to the garbage collector.
 */
async function writeAsStream(backend: RepositoryBackend, key: string, pieces: AsyncIterable<Piece>, abort: AbortController): Promise<ObjectInfo> {
  const body = new PassThrough({highWaterMark: 1024 * 1024})
  // Both sides settle before this returns, also on failure: a caller that removes a failed backup's
  // objects must not race a put that is still creating its directory or temporary file. The first
  // failure is the one reported (the other side fails because of it).
  let failure: {error: unknown} | null = null
  const data = async function* (src: AsyncIterable<Piece>) {
    for await (const p of src) yield p.data
  }
  const produce = pipeline(pieces, data, body, {signal: abort.signal}).catch((error) => {
    failure ??= {error}
    body.destroy(error)
  })
  const consume = backend.put(key, body, {signal: abort.signal}).catch((error) => {
    failure ??= {error}
    abort.abort(error)
    return null
  })
  const [, put] = await Promise.all([produce, consume])
  if (failure) throw (failure as {error: unknown}).error
  return put!
}

export interface WrittenArchive {
  key: string
  size: number
  /** Hash of the object's bytes, in the writer's algorithm. */
  hash: string
  uncompressedSize: number
}

/**
 * Writes the archives of one backup. The frame buffers and the zstd streams are made once and shared
 * by every archive: made per archive, each space's set was allocated while the last one's waited for
 * the garbage collector, which put a peak in the memory at every space. Up to `archives` archives may
 * be written at once; each holds at most one frame buffer while it reads, so the pool has one per
 * archive beside the FRAME_CONCURRENCY being compressed.
 */
export class ArchiveWriter {
  private readonly pool: Pool<Buffer>
  private readonly compressorList: FrameCompressor[]
  private readonly compressors: Pool<FrameCompressor>
  private closed = false

  constructor(
    private readonly compression: Compression,
    archives = 1,
  ) {
    this.pool = new Pool<Buffer>(Array.from({length: FRAME_CONCURRENCY + archives}, () => Buffer.allocUnsafe(FRAME_SIZE)))
    this.compressorList = compression.codec === 'zstd' ? Array.from({length: FRAME_CONCURRENCY}, () => new FrameCompressor(compression.level)) : []
    this.compressors = new Pool(this.compressorList)
  }

  async write(backend: RepositoryBackend, key: string, entries: ArchiveEntry[], hashAlgorithm: HashAlgorithm, onBytes: (n: number) => void, signal?: AbortSignal): Promise<WrittenArchive> {
    if (this.closed) throw new Error(`${key}: the archive writer was closed (after a failed archive its buffers are not reused)`)
    signal?.throwIfAborted() // the listener below only hears aborts from now on
    let uncompressedSize = 0
    let size = 0
    const hash = createHasher(hashAlgorithm)
    const abort = new AbortController()
    const onAbort = () => abort.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, {once: true})
    async function* counted(frames: AsyncIterable<Frame>) {
      for await (const f of frames) {
        uncompressedSize += f.data.length
        yield f
      }
    }
    async function* hashed(src: AsyncIterable<Piece>) {
      for await (const p of src) {
        hash.update(p.data)
        size += p.data.length
        yield p
      }
    }
    const pack = this.compression.codec === 'zstd' ? compressStage(this.compressors) : copyStage
    const pieces = hashed(pack(counted(tarFrames(entries, this.pool, FRAME_SIZE, onBytes, abort.signal))))
    try {
      const put = backend.openWriter ? await writeFromBuffers(backend, key, pieces, abort.signal) : await writeAsStream(backend, key, pieces, abort)
      if (put.size !== size) throw new Error(`${key}: stored ${put.size} bytes, wrote ${size}`)
      return {key, size, hash: hash.digest(), uncompressedSize}
    } catch (error) {
      // A compressor may be left inside a frame: none of them is used again.
      this.close()
      throw error
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  close(): void {
    this.closed = true
    for (const c of this.compressorList) c.close()
  }
}
