/**
 * Archive compression. A .tar.zst we write is a sequence of independent zstd frames of about
 * FRAME_SIZE input bytes each, compressed concurrently in libuv's thread pool, so it uses every core
 * as `zstd -T0` does. Each frame is preceded by a zstd *skippable* frame holding its compressed size:
 * `zstd -d` ignores skippable frames, so the file is a standard .zst, and our reader can cut the
 * stream into frames and decompress them concurrently too.
 *
 * Why not Node's streaming zstd: its multithreaded mode (ZSTD_c_nbWorkers) crashes the stream wrapper
 * (ERR_STREAM_PUSH_AFTER_EOF on Node 24), a single stream is limited to one core, and its streaming
 * decompressor fails on concatenated frames when a frame ends inside an input chunk ("Unknown frame
 * descriptor"). A stream per compressor slot that ends a frame at every flush, and one-shot
 * decompression per frame, have none of these problems. Memory is bounded by `concurrency` frames in
 * flight.
 */
import {promisify} from 'node:util'
import {constants, createZstdCompress, type ZstdCompress, zstdDecompress} from 'node:zlib'

import {IntegrityError, UsageError} from '../errors.js'
import type {ByteReader} from './backend.js'

const decompressAsync = promisify(zstdDecompress)

/** Skippable-frame magic we use for the size index (any of 0x184D2A50..5F is skippable). */
const INDEX_MAGIC = 0x184d2a5e
const ZSTD_MAGIC = 0xfd2fb528
/** Upper bounds that keep a hostile archive from making us allocate without limit. */
const MAX_FRAME = 64 * 1024 * 1024
/**
 * Input bytes per frame, and frames compressed at once (libuv's pool has 4 threads; 4 in flight kept
 * 2 cores busiest). 2 MiB frames were as fast as 4 MiB ones and took 25 MiB less peak memory.
 */
export const FRAME_SIZE = 2 * 1024 * 1024
export const FRAME_CONCURRENCY = 4

/** Room for one compressed frame of FRAME_SIZE input (zstd's worst case is input + 1/256 + a few bytes). */
const FRAME_ROOM = FRAME_SIZE + (FRAME_SIZE >> 7) + 4096

/**
 * Level 1, not zstd's usual 3: a WAL is mostly embedding floats, on which level 3 took 1.5-1.7x the
 * CPU of level 1 for archives 0.6 % smaller (measured, see docs/architecture.md).
 */
export const DEFAULT_ZSTD_LEVEL = 1

export type Compression = {codec: 'zstd'; level: number} | {codec: 'none'}

export function parseCompression(text: string): Compression {
  if (text === 'none') return {codec: 'none'}
  const m = /^zstd(?::(\d{1,2}))?$/.exec(text)
  const level = m ? Number(m[1] ?? DEFAULT_ZSTD_LEVEL) : NaN
  if (!m || level < 1 || level > 19) {
    throw new UsageError(`unknown compression ${JSON.stringify(text)}`, {code: 'BAD_COMPRESSION', suggestion: 'Use zstd, zstd:LEVEL (1-19) or none.'})
  }
  return {codec: 'zstd', level}
}

export function archiveExtension(c: Compression): string {
  return c.codec === 'zstd' ? '.zst' : ''
}

function frameIndex(compressedSize: number): Buffer {
  const index = Buffer.allocUnsafe(12)
  index.writeUInt32LE(INDEX_MAGIC, 0)
  index.writeUInt32LE(4, 4)
  index.writeUInt32LE(compressedSize, 8)
  return index
}

/**
 * Frees the memory of an ArrayBuffer that node:zlib handed us and nothing else uses. V8 frees Buffer
 * memory only in a full garbage collection and starts one for every few dozen MiB allocated: the
 * ~2 MiB that node:zlib allocates for every frame's output made most of the 47 full collections of a
 * 1 GiB backup and about 20 of the 60 of its restore. Detaching the ArrayBuffer frees it at once.
 * Callers pass only buffers node:zlib allocated for its output (of at least its 2 MiB chunk size);
 * the size check is a second guard that a Buffer from the pool small Buffers share is never detached.
 */
function freeBuffer(ab: ArrayBufferLike): void {
  if (ab instanceof ArrayBuffer && ab.byteLength > Buffer.poolSize && !ab.detached) ab.transfer(0)
}

/**
 * Compresses frames in the thread pool with one zstd stream that lives for many frames: each frame is
 * ended with ZSTD_e_end, after which the stream starts the next one with the same context. A stream
 * per frame (or the one-shot zstdCompress) allocated a new compression context each time, and V8
 * counts that memory as external: reusing the streams cut the full garbage collections of a 1 GiB
 * backup from 58 to 47 (the rest are set off by the output buffers, which node:zlib allocates anew).
 * One frame at a time per compressor; `data` may be reused once the promise settles.
 *
 * The pieces of a frame are views of node:zlib's output buffers; one buffer may hold the end of one
 * frame and the start of the next. A caller that is done with a piece may hand it to `release`: a
 * buffer that zlib has left behind is freed once every piece cut from it was released. A caller that
 * never releases leaves them to the garbage collector.
 */
export class FrameCompressor {
  private readonly z: ZstdCompress
  private out: Buffer[] = []
  private size = 0
  private failed: ((error: Error) => void) | null = null
  /** The stream's first error: every later frame fails with it (the compressor is shared by archives). */
  private error: Error | null = null
  /** zlib's output buffer being filled, and how many pieces of each buffer are out (weak: unreleased ones go to the GC). */
  private current: ArrayBufferLike | null = null
  private readonly piecesOut = new WeakMap<ArrayBufferLike, number>()

  constructor(level: number) {
    // An output buffer a little above the frame size holds a frame in one or two pieces (zstd's worst
    // case is input + 1/256 + a few bytes).
    this.z = createZstdCompress({params: {[constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 1}, chunkSize: FRAME_ROOM})
    this.z.on('data', (c: Buffer) => {
      const ab = c.buffer
      if (ab !== this.current) {
        // zlib writes only into its newest buffer: the one before is done, and free if no piece is out.
        const previous = this.current
        this.current = ab
        if (previous && !this.piecesOut.has(previous)) freeBuffer(previous)
      }
      this.piecesOut.set(ab, (this.piecesOut.get(ab) ?? 0) + 1)
      this.out.push(c)
      this.size += c.length
    })
    this.z.on('error', (error) => {
      this.error ??= error
      this.failed?.(error)
    })
  }

  /** The frame for `data` behind its size index, as a list of buffers. */
  compress(data: Buffer): Promise<Buffer[]> {
    return new Promise((resolve, reject) => {
      // A closed stream reports a write only to the flush callback (no 'error' event): without these
      // checks the frame would "succeed" with no data in it.
      if (this.z.destroyed) {
        reject(this.error ?? new Error('zstd compressor used after it was closed'))
        return
      }
      this.failed = reject
      this.z.write(data)
      this.z.flush(constants.ZSTD_e_end, (error?: Error | null) => {
        const frame = [frameIndex(this.size), ...this.out]
        this.out = []
        this.size = 0
        this.failed = null
        if (error || this.z.destroyed) reject(error ?? this.error ?? new Error('zstd compressor closed while compressing a frame'))
        else resolve(frame)
      })
    })
  }

  /** Hands back a piece of a frame the caller is done with (the size index piece is not zlib's: ignored). */
  release(piece: Buffer): void {
    const ab = piece.buffer
    const n = this.piecesOut.get(ab)
    if (n === undefined) return
    if (n > 1) {
      this.piecesOut.set(ab, n - 1)
      return
    }
    this.piecesOut.delete(ab)
    if (ab !== this.current) freeBuffer(ab)
  }

  close(): void {
    this.z.destroy()
  }
}

/**
 * Decompresses an archive we wrote (indexed frames, several in flight at once, output in order).
 * Each compressed frame is read into one of a few reused buffers, so reading allocates nothing.
 *
 * Each Buffer it yields is emptied (its memory freed, its length 0) when the consumer asks for the
 * next one: by then the consumer must be done with it, or have copied what it keeps.
 */
export function zstdUnframes(concurrency = FRAME_CONCURRENCY) {
  return async function* (source: ByteReader): AsyncGenerator<Buffer> {
    /** Reads n bytes into dst, fewer only at the end of the archive; returns how many. */
    const fill = async (dst: Buffer, n: number): Promise<number> => {
      let got = 0
      while (got < n) {
        const k = await source.read(dst, got, n - got)
        if (k === 0) break
        got += k
      }
      return got
    }
    const free: Buffer[] = []
    for (let i = 0; i <= concurrency; i++) free.push(Buffer.allocUnsafe(FRAME_ROOM))
    const index = Buffer.alloc(12)
    const pending: Array<Promise<Buffer>> = []
    /** Hands out the oldest frame's output and frees it once the consumer asks for more. */
    const next = async function* () {
      const out = await pending.shift()!
      yield out
      freeBuffer(out.buffer)
    }
    for (;;) {
      const got = await fill(index, 12)
      if (got === 0) break
      if (got < 12) throw new IntegrityError(`compressed archive ends with ${got} stray bytes`, {code: 'ARCHIVE_CORRUPT'})
      const magic = index.readUInt32LE(0)
      // Only archives we wrote are read: Node's zstd (one-shot and streaming) returns only the first of
      // several concatenated frames, so reading a plain multi-frame .zst would silently lose data.
      if (magic !== INDEX_MAGIC || index.readUInt32LE(4) !== 4) {
        throw new IntegrityError(`compressed archive has ${magic === ZSTD_MAGIC ? 'a zstd frame without the engram-ops size index' : 'an unknown frame'} at the position of a frame index`, {code: 'ARCHIVE_CORRUPT'})
      }
      const size = index.readUInt32LE(8)
      if (size > MAX_FRAME) throw new IntegrityError(`compressed archive declares a ${size}-byte frame`, {code: 'ARCHIVE_CORRUPT'})
      // `pending` holds at most `concurrency` frames, so a pooled buffer is free here. A frame larger
      // than ours (not written by us) gets a buffer of its own.
      const room = size <= FRAME_ROOM ? free.pop()! : Buffer.allocUnsafe(size)
      if ((await fill(room, size)) < size) throw new IntegrityError('compressed archive ends inside a frame', {code: 'ARCHIVE_CORRUPT'})
      // The output is a Buffer of the one-shot decompressor's own, which closes when it is done: it
      // is ours alone, so `freeBuffer` may free it.
      const decoded = decompressAsync(room.subarray(0, size), {maxOutputLength: MAX_FRAME, chunkSize: FRAME_SIZE + 65536}).finally(() => {
        if (room.length === FRAME_ROOM) free.push(room)
      })
      // It may reject (a damaged frame) while we wait for input: handled when awaited, never unhandled.
      decoded.catch(() => {})
      pending.push(decoded)
      if (pending.length >= concurrency) yield* next()
    }
    while (pending.length > 0) yield* next()
  }
}
