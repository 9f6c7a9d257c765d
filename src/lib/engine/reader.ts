/**
 * Streams a WAL file record by record, with byte offsets, classifying every record the way Engram's
 * reader does (storage format §2.7):
 *   - fewer than 64 bytes left at a header boundary: a clean end (`partial_header`, or `eof` at 0 bytes);
 *   - bad magic or header_crc: the rest of the file is unreadable (`bad_header`);
 *   - a valid header whose payload runs past the end: `torn_payload` (Engram refuses to open the space);
 *   - payload_crc mismatch: the record is skipped and reading goes on (`bad_payload_crc`).
 * It holds one window of the file in memory (4 MiB, grown only for a larger single record), never the
 * whole file, and never throws on garbage: damage is data, reported in `end` and `validity`.
 */
import {open, type FileHandle} from 'node:fs/promises'

import {fsError} from '../errors.js'
import {crc32c} from './crc32c.js'
import {computeHeaderCrc, decodeHeader, HEADER_SIZE, headerError, type RecordHeader} from './record.js'

/** Room in front of each read buffer for the unparsed tail of the previous window. */
const HEADROOM = 256 * 1024
const EMPTY = Buffer.alloc(0)

export type RecordValidity = 'ok' | 'bad_payload_crc'

export interface WalRecord {
  /** Position of the record in the file, from 0. */
  index: number
  offset: number
  header: RecordHeader
  validity: RecordValidity
  /** 64 + payload size. */
  recordSize: number
  computedPayloadCrc: number
  /**
   * The payload: a view into the reader's window, valid only until the next record is requested
   * (with `batches()`: until the next batch is).
   * Undefined for a payload larger than `maxInlinePayload` (its CRC is computed while streaming).
   */
  payload?: Buffer
  /** The whole record (header and payload) as it is on disk; a view like `payload`, and undefined with it. */
  bytes?: Buffer
}

/** What the reader needs of an open file: a FileHandle, or the same over a raw descriptor (in a worker). */
export type ReadHandle = Pick<FileHandle, 'read' | 'stat'>

export type FileEnd =
  | {kind: 'eof'; offset: number}
  | {kind: 'partial_header'; offset: number; bytes: number}
  | {
      kind: 'bad_header'
      offset: number
      bytesDiscarded: number
      error: string
      header: RecordHeader
      computedHeaderCrc: number
    }
  | {kind: 'torn_payload'; offset: number; payloadBytesPresent: number; truncateTo: number; header: RecordHeader}

export interface ReadOptions {
  /** Read only the first `limit` bytes (a size snapshot of a live file). Default: the size at open. */
  limit?: number
  /**
   * Read through this already-open handle instead of opening `path` (it is not closed). Backups keep
   * one handle per file across passes, so a file unlinked by Engram's compaction stays readable.
   */
  handle?: ReadHandle
  /** Start at this offset, which must be a record boundary (incremental reads). */
  start?: number
  signal?: AbortSignal
  /** Payloads above this size are CRC-checked in chunks and not exposed. Default 64 MiB. */
  maxInlinePayload?: number
  /** Size of the read window. Default 4 MiB. */
  windowSize?: number
}

export class WalFileReader {
  /** How the walk ended; set once `records()` or `batches()` has finished. */
  end?: FileEnd
  /** Bytes the walk considered (the size snapshot). */
  size = 0
  /** Offset just after the last complete record with a valid header (a safe cut point). */
  lastGoodEnd = 0
  /** Offset just after the last record whose header and payload CRCs both pass. */
  lastValidEnd = 0
  recordsRead = 0

  /** Read buffers: `window` holds file bytes [windowPos, windowPos+windowLen) at index `base`. */
  private window: Buffer
  private spare: Buffer
  private base = HEADROOM
  private windowPos = 0
  private windowLen = 0
  /** The next window being read in the background while records are processed. */
  private prefetch: {pos: number; len: number; promise: Promise<number>} | null = null

  constructor(
    readonly path: string,
    private readonly options: ReadOptions = {},
  ) {
    // Buffers are sized once the file's size is known (a small file gets small buffers).
    this.window = EMPTY
    this.spare = EMPTY
  }

  private allocate(): void {
    const size = Math.min(this.options.windowSize ?? 4 * 1024 * 1024, Math.max(4096, this.size))
    this.window = Buffer.allocUnsafe(HEADROOM + size)
    this.spare = Buffer.allocUnsafe(this.window.length)
  }

  /** Walks the whole file and returns the end; for callers that only need the classification. */
  async scan(): Promise<FileEnd> {
    for await (const _ of this.records()) {
      // records are counted by the generator
    }
    return this.end!
  }

  async *records(): AsyncGenerator<WalRecord> {
    for await (const batch of this.batches()) yield* batch
  }

  /**
   * The records in batches: every record of a batch lies in the current read window, so its views stay
   * valid until the next batch is requested. One promise per window instead of several per record,
   * which made a backup's scan spend more time in promise machinery than in its CRCs.
   */
  async *batches(): AsyncGenerator<Iterable<WalRecord>> {
    let fh: ReadHandle
    let owned: FileHandle | undefined
    try {
      fh = this.options.handle ?? (owned = await open(this.path, 'r'))
    } catch (error) {
      throw fsError(error, 'open WAL file', this.path)
    }
    try {
      const st = await fh.stat()
      if (!st.isFile()) throw fsError(Object.assign(new Error('not a file'), {code: 'ENOTFILE'}), 'read WAL file', this.path)
      this.size = Math.min(this.options.limit ?? st.size, st.size)
      this.allocate()
      yield* this.walk(fh)
    } finally {
      await this.prefetch?.promise.catch(() => 0)
      this.prefetch = null
      await owned?.close()
    }
  }

  private startPrefetch(fh: ReadHandle): void {
    const pos = this.windowPos + this.windowLen
    const len = Math.min(this.spare.length - HEADROOM, this.size - pos)
    if (len <= 0) return
    this.prefetch = {pos, len, promise: fh.read(this.spare, HEADROOM, len, pos).then((r) => r.bytesRead)}
  }

  /**
   * Makes file bytes [pos, pos+n) available in the window and returns their index in it. Reads are
   * double-buffered: the next window is read while the current one is parsed, and the unparsed tail of
   * the current window is copied into the headroom in front of it.
   */
  private async ensure(fh: ReadHandle, pos: number, n: number): Promise<number> {
    const at = this.locate(pos, n)
    if (at >= 0) return at
    const end = this.windowPos + this.windowLen
    const keep = pos >= this.windowPos && pos < end ? end - pos : 0
    const pending = this.prefetch
    this.prefetch = null
    let got: number
    try {
      got = pending ? await pending.promise : 0
    } catch (error) {
      throw fsError(error, 'read WAL file', this.path)
    }
    this.options.signal?.throwIfAborted()
    if (pending && pending.pos === end && (keep > 0 || pos === end) && keep <= HEADROOM && n <= keep + got) {
      this.window.copy(this.spare, HEADROOM - keep, this.base + pos - this.windowPos, this.base + this.windowLen)
      ;[this.window, this.spare] = [this.spare, this.window]
      this.base = HEADROOM - keep
      this.windowPos = pos
      this.windowLen = keep + got
      if (got < pending.len) this.size = this.windowPos + this.windowLen // the file shrank under us
      this.startPrefetch(fh)
      return this.base
    }
    // Slow path: a jump, a record larger than the window, or a leftover larger than the headroom.
    if (HEADROOM + n > this.window.length) {
      const size = HEADROOM + Math.max(n, this.window.length - HEADROOM)
      const grown = Buffer.allocUnsafe(size)
      if (keep > 0) this.window.copy(grown, HEADROOM, this.base + pos - this.windowPos, this.base + this.windowLen)
      this.window = grown
      this.spare = Buffer.allocUnsafe(size)
    } else if (keep > 0) {
      this.window.copy(this.window, HEADROOM, this.base + pos - this.windowPos, this.base + this.windowLen)
    }
    this.base = HEADROOM
    this.windowPos = pos
    this.windowLen = keep
    const want = Math.min(this.window.length - HEADROOM, this.size - pos)
    while (this.windowLen < want) {
      this.options.signal?.throwIfAborted()
      let bytesRead: number
      try {
        ;({bytesRead} = await fh.read(this.window, HEADROOM + this.windowLen, want - this.windowLen, pos + this.windowLen))
      } catch (error) {
        throw fsError(error, 'read WAL file', this.path)
      }
      if (bytesRead === 0) {
        this.size = pos + this.windowLen // the file shrank under us: what we have is the end
        break
      }
      this.windowLen += bytesRead
    }
    this.startPrefetch(fh)
    return this.base
  }

  /** Index of file bytes [pos, pos+n) in the window, or -1 when they are not all in it. */
  private locate(pos: number, n: number): number {
    return pos >= this.windowPos && pos + n <= this.windowPos + this.windowLen ? this.base + pos - this.windowPos : -1
  }

  /**
   * Walks the records: each batch is a synchronous pass over the records that lie in the window, made
   * one at a time as the consumer asks (so only the current record is alive: materialising a window's
   * records at once made the garbage collector promote them and tripled a scan's heap). Between
   * batches the window moves. A batch updates `pos` before it hands out a record, so a consumer that
   * stops early never sees a record twice.
   */
  private async *walk(fh: ReadHandle): AsyncGenerator<Iterable<WalRecord>> {
    const state: WalkState = {pos: this.options.start ?? 0, index: 0, want: null, done: false}
    this.lastGoodEnd = state.pos
    this.lastValidEnd = state.pos
    let last: {pos: number; n: number} | null = null
    for (;;) {
      const batch = this.inWindow(state)
      yield batch
      // A batch the consumer never opened is walked past here (so the walk always moves on); one it
      // left early with `break` (which closes it) continues, in the next batch, after the last record
      // it took. A batch advanced by hand and then abandoned open is walked past like an unopened one.
      if (!state.done && !state.want) {
        for (const _ of batch) {
          // passed over unread
        }
      }
      if (state.done) return
      const want = state.want
      if (!want) continue
      state.want = null
      if (want.n === Infinity) {
        yield [await this.largeRecord(fh, state)]
        continue
      }
      // After the window moved, the bytes are there or the file has shrunk (the size says so): asking
      // twice for the same bytes would mean neither, a bug; stop instead of spinning.
      if (last && last.pos === want.pos && last.n === want.n) throw new Error(`${this.path}: no progress reading ${want.n} bytes at ${want.pos}`)
      last = want
      await this.ensure(fh, want.pos, want.n)
    }
  }

  /** The records from `state.pos` that are whole in the window; sets `want` (or `done`) where it stops. */
  private *inWindow(state: WalkState): Generator<WalRecord> {
    const maxInline = this.options.maxInlinePayload ?? 64 * 1024 * 1024
    for (;;) {
      const pos = state.pos
      const remaining = this.size - pos
      if (remaining <= 0) {
        this.end = {kind: 'eof', offset: pos}
        state.done = true
        return
      }
      if (remaining < HEADER_SIZE) {
        this.end = {kind: 'partial_header', offset: pos, bytes: remaining}
        state.done = true
        return
      }
      const at = this.locate(pos, HEADER_SIZE)
      if (at < 0) {
        state.want = {pos, n: HEADER_SIZE}
        return
      }
      const header = decodeHeader(this.window, at)
      const computedHeaderCrc = computeHeaderCrc(this.window, at)
      const error = headerError(header, computedHeaderCrc)
      this.recordsRead = state.index + 1
      if (error) {
        this.end = {kind: 'bad_header', offset: pos, bytesDiscarded: remaining, error, header, computedHeaderCrc}
        state.done = true
        return
      }
      const recordSize = HEADER_SIZE + header.payloadSize
      if (recordSize > remaining) {
        this.end = {kind: 'torn_payload', offset: pos, payloadBytesPresent: remaining - HEADER_SIZE, truncateTo: pos, header}
        state.done = true
        return
      }
      if (header.payloadSize > maxInline) {
        state.want = {pos, n: Infinity}
        return
      }
      const start = this.locate(pos, recordSize)
      if (start < 0) {
        state.want = {pos, n: recordSize}
        return
      }
      const bytes = this.window.subarray(start, start + recordSize)
      const payload = bytes.subarray(HEADER_SIZE)
      const computedPayloadCrc = crc32c(payload)
      yield this.advance(state, {index: state.index, offset: pos, header, validity: computedPayloadCrc === header.payloadCrc ? 'ok' : 'bad_payload_crc', recordSize, computedPayloadCrc, payload, bytes})
    }
  }

  /** A record whose payload is above `maxInlinePayload`: its CRC is computed a window at a time. */
  private async largeRecord(fh: ReadHandle, state: WalkState): Promise<WalRecord> {
    const pos = state.pos
    const header = decodeHeader(this.window, await this.ensure(fh, pos, HEADER_SIZE))
    let computedPayloadCrc = 0
    let done = 0
    while (done < header.payloadSize) {
      const n = Math.min(this.window.length - HEADROOM, header.payloadSize - done)
      const i = await this.ensure(fh, pos + HEADER_SIZE + done, n)
      if (i + n > this.base + this.windowLen) break // the file shrank under us: the CRC cannot match
      computedPayloadCrc = crc32c(this.window.subarray(i, i + n), computedPayloadCrc)
      done += n
    }
    const validity: RecordValidity = computedPayloadCrc === header.payloadCrc ? 'ok' : 'bad_payload_crc'
    return this.advance(state, {index: state.index, offset: pos, header, validity, recordSize: HEADER_SIZE + header.payloadSize, computedPayloadCrc})
  }

  /** Moves the walk past `record` and returns it. */
  private advance(state: WalkState, record: WalRecord): WalRecord {
    state.pos += record.recordSize
    state.index++
    this.lastGoodEnd = state.pos
    if (record.validity === 'ok') this.lastValidEnd = state.pos
    return record
  }
}

/** Where a walk is, and what it needs next: bytes at a position (n = Infinity: a large record), or nothing more. */
interface WalkState {
  pos: number
  index: number
  want: {pos: number; n: number} | null
  done: boolean
}

/** Reads exactly one record's payload at a known offset (used to serve memories from disk). */
export async function readPayloadAt(fh: FileHandle, offset: number, payloadSize: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(payloadSize)
  let done = 0
  while (done < payloadSize) {
    const {bytesRead} = await fh.read(buf, done, payloadSize - done, offset + HEADER_SIZE + done)
    if (bytesRead === 0) throw new Error(`short read at offset ${offset + HEADER_SIZE + done}`)
    done += bytesRead
  }
  return buf
}
