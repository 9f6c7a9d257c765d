/**
 * Appends records to a WAL file the way Engram's writer does: one file per writer instance named
 * `wal-<16 hex creation secs>.log`, opened create+append with mode 0600, sequences restarting at 0
 * per writer, records written in batches with one fsync per batch.
 *
 * GroupCommitWriter adds Engram's batching (up to 1000 entries or 10 ms) for a server, but unlike
 * Engram it acknowledges an entry only after its batch is fsynced.
 */
import {chmod, mkdir, open, type FileHandle} from 'node:fs/promises'
import {join} from 'node:path'

import {fsError} from '../errors.js'
import {nowNs} from './datetime.js'
import {SPACE_SUBDIRS, walFileName} from './layout.js'
import {HEADER_SIZE, writeRecord} from './record.js'

export interface AppendInput {
  entryType: number
  payload: Uint8Array
  /** Defaults to now (ns since the epoch), as Engram stamps entries at creation. */
  timestampNs?: bigint
}

export interface AppendedRecord {
  file: string
  offset: number
  sequence: bigint
  timestampNs: bigint
  payloadSize: number
}

/** Creates `<root>/<space>/{wal,hot,warm,cold}` like Engram's ensure_directories. */
export async function ensureSpaceDirs(spacePath: string): Promise<void> {
  for (const sub of SPACE_SUBDIRS) {
    try {
      await mkdir(join(spacePath, sub), {recursive: true})
    } catch (error) {
      throw fsError(error, 'create space directory', join(spacePath, sub))
    }
  }
}

export interface WalWriterOptions {
  /** Writer creation time in Unix seconds (the file name). Default: now. */
  createdAtSecs?: number | bigint
  /** First sequence number (Engram starts every writer at 0). */
  firstSequence?: bigint
  /** fsync after every batch (default true, Engram's PerBatch mode). */
  fsync?: boolean
}

export class WalWriter {
  private nextSequence: bigint
  private scratch = Buffer.allocUnsafe(1024 * 1024)

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly name: string,
    /** Current size: the offset of the next record. */
    public size: number,
    private readonly fsync: boolean,
    firstSequence: bigint,
  ) {
    this.nextSequence = firstSequence
  }

  static async open(walDir: string, options: WalWriterOptions = {}): Promise<WalWriter> {
    const secs = options.createdAtSecs ?? Math.floor(Date.now() / 1000)
    const name = walFileName(secs)
    const path = join(walDir, name)
    try {
      await mkdir(walDir, {recursive: true})
      const fh = await open(path, 'a', 0o600)
      const st = await fh.stat()
      if ((st.mode & 0o777) !== 0o600) await chmod(path, 0o600)
      return new WalWriter(fh, path, name, st.size, options.fsync ?? true, options.firstSequence ?? 0n)
    } catch (error) {
      throw fsError(error, 'open WAL file for writing', path)
    }
  }

  /** Writes the entries as one batch (one write, one fsync) and returns where each landed. */
  async append(entries: readonly AppendInput[]): Promise<AppendedRecord[]> {
    let total = 0
    for (const e of entries) total += HEADER_SIZE + e.payload.length
    if (total > this.scratch.length) this.scratch = Buffer.allocUnsafe(Math.max(total, this.scratch.length * 2))
    const out: AppendedRecord[] = []
    let at = 0
    for (const e of entries) {
      const sequence = this.nextSequence++
      const timestampNs = e.timestampNs ?? nowNs()
      out.push({file: this.name, offset: this.size + at, sequence, timestampNs, payloadSize: e.payload.length})
      at += writeRecord(this.scratch, at, {sequence, timestampNs, entryType: e.entryType, payload: e.payload})
    }
    try {
      let done = 0
      while (done < total) {
        const {bytesWritten} = await this.fh.write(this.scratch, done, total - done)
        done += bytesWritten
      }
      if (this.fsync) await this.fh.sync()
    } catch (error) {
      throw fsError(error, 'append to WAL file', this.path)
    }
    this.size += total
    return out
  }

  async close(): Promise<void> {
    await this.fh.close()
  }
}

interface Queued {
  input: AppendInput
  resolve: (r: AppendedRecord) => void
  reject: (e: unknown) => void
}

/** Batches concurrent appends (≤ maxBatch entries or maxDelayMs) into one write + fsync each. */
export class GroupCommitWriter {
  private queue: Queued[] = []
  private timer: NodeJS.Timeout | null = null
  private flushing: Promise<void> = Promise.resolve()

  constructor(
    readonly writer: WalWriter,
    private readonly maxBatch = 1000,
    private readonly maxDelayMs = 10,
  ) {}

  append(input: AppendInput): Promise<AppendedRecord> {
    return new Promise((resolve, reject) => {
      this.queue.push({input: {...input, timestampNs: input.timestampNs ?? nowNs()}, resolve, reject})
      if (this.queue.length >= this.maxBatch) this.kick()
      else this.timer ??= setTimeout(() => this.kick(), this.maxDelayMs)
    })
  }

  private kick(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    const batch = this.queue.splice(0, this.maxBatch)
    if (batch.length === 0) return
    this.flushing = this.flushing.then(async () => {
      try {
        const written = await this.writer.append(batch.map((q) => q.input))
        batch.forEach((q, i) => q.resolve(written[i]))
      } catch (error) {
        for (const q of batch) q.reject(error)
      }
    })
    if (this.queue.length > 0) this.kick()
  }

  /** Writes everything queued and waits for it to be durable. */
  async flush(): Promise<void> {
    this.kick()
    await this.flushing
  }

  async close(): Promise<void> {
    await this.flush()
    await this.writer.close()
  }
}
