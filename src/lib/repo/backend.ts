/**
 * The object store a backup repository lives in. Everything above this interface (backup, restore,
 * verify, retention) speaks only keys and streams, so a repository on a local disk and one on S3
 * behave the same.
 *
 * Implementations MUST:
 *  - make `put` atomic: a reader sees the whole object or none of it, never a prefix;
 *  - give read-after-write consistency for `stat`/`get`/`list` of objects they wrote;
 *  - list keys under a prefix in lexical order;
 *  - make `delete` idempotent (deleting a missing key is not an error);
 *  - throw BackendError with a `kind` instead of native errors, so callers never match SDK names.
 */
import type {Readable} from 'node:stream'

import {ExitCode, OpsError, type ExitCodeValue} from '../errors.js'

export interface ObjectInfo {
  key: string
  size: number
  modified?: Date
}

export interface PutOptions {
  signal?: AbortSignal
  /** Fail with kind 'exists' instead of replacing an existing object (lock files). */
  ifAbsent?: boolean
}

export interface GetOptions {
  signal?: AbortSignal
  /** Byte range to read: from `offset`, `length` bytes (to the end when omitted). */
  range?: {offset: number; length?: number}
}

export interface RepositoryBackend {
  /** The repository URL, with any credentials removed, for messages. */
  readonly url: string
  stat(key: string): Promise<ObjectInfo | null>
  list(prefix: string): AsyncIterable<ObjectInfo>
  get(key: string, options?: GetOptions): Promise<Readable>
  /**
   * Reads an object from its start into buffers the caller owns, where the backend can do that
   * without a buffer of its own per chunk (a file). Optional: `openObjectReader` falls back to `get`.
   */
  openReader?(key: string, options?: {signal?: AbortSignal}): Promise<ObjectReader>
  /** Streams `body` into `key` atomically and returns what was stored. */
  put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<ObjectInfo>
  /**
   * Writes an object from the caller's buffers, each one the caller's again (to reuse or free) once
   * its write resolves; atomic like `put`: nothing is visible under `key` before `commit`. Optional:
   * where a backend cannot say when it is done with a buffer (S3 uploads gather parts), callers use
   * `put` with a stream.
   */
  openWriter?(key: string, options?: PutOptions): Promise<ObjectWriter>
  delete(keys: readonly string[]): Promise<void>
  close(): Promise<void>
  /**
   * Removes leftovers of interrupted puts, where a backend can have any: those older than `olderThanMs`
   * (0: all of them), and younger ones the backend knows to be its own dead writers'.
   */
  sweepTemporaries?(olderThanMs: number): Promise<number>
  /** Bytes free where objects are stored, where the backend can tell (a filesystem). */
  freeSpace?(): Promise<number | null>
  /** The storage server's clock (from its Date header), where there is a server. */
  serverTime?(): Promise<Date | null>
}

export type BackendErrorKind = 'not-found' | 'exists' | 'permission' | 'transient' | 'no-space' | 'invalid' | 'other'

const EXIT_FOR_KIND: Record<BackendErrorKind, ExitCodeValue> = {
  'not-found': ExitCode.repositoryMissing,
  exists: ExitCode.locked,
  permission: ExitCode.permission,
  transient: ExitCode.unavailable,
  'no-space': ExitCode.unavailable,
  invalid: ExitCode.usage,
  other: ExitCode.unavailable,
}

export class BackendError extends OpsError {
  readonly kind: BackendErrorKind
  constructor(kind: BackendErrorKind, message: string, o: {subject?: string; suggestion?: string; cause?: unknown} = {}) {
    super(message, {code: `BACKEND_${kind.toUpperCase().replace('-', '_')}`, exit: EXIT_FOR_KIND[kind], ...o})
    this.kind = kind
  }
}

/** An object written in order from the caller's buffers (see RepositoryBackend.openWriter). */
export interface ObjectWriter {
  /** Appends `data`; the caller may reuse or free it once this resolves. One write at a time. */
  write(data: Uint8Array): Promise<void>
  /** Makes the object visible under its key, durably, and returns what was stored. */
  commit(): Promise<ObjectInfo>
  /** Discards what was written; safe after a failed write or commit. */
  abort(): Promise<void>
}

/** Bytes read in order into the caller's buffers. */
export interface ByteReader {
  /** Reads up to `length` bytes into `dst` at `offset`; resolves with how many, 0 at the end. */
  read(dst: Uint8Array, offset: number, length: number): Promise<number>
}

/** An object read in order into the caller's buffers. */
export interface ObjectReader extends ByteReader {
  /** Releases the object; safe to call more than once, also after a failed read. */
  close(): Promise<void>
}

/**
 * The bytes of `source` 1 MiB at a time, read into one reused buffer: each chunk is valid until the
 * consumer asks for the next one.
 */
export async function* chunksOf(source: ByteReader): AsyncGenerator<Buffer> {
  const chunk = Buffer.allocUnsafe(1024 * 1024)
  for (;;) {
    const n = await source.read(chunk, 0, chunk.length)
    if (n === 0) return
    yield chunk.subarray(0, n)
  }
}

/**
 * Opens `key` for reading into the caller's buffers: through the backend's own reader where it has
 * one, else by copying from the chunks of `get`. Why it matters: every chunk a stream hands out is a
 * new Buffer, and V8 frees Buffer memory only in a full garbage collection, which it starts for every
 * few dozen MiB of it. A 1 GiB restore read 0.9 GiB of objects that way; with the frame decompression
 * output (see zstdUnframes) that made 60 full collections, a fifth of the process's CPU time.
 */
export async function openObjectReader(backend: RepositoryBackend, key: string, options: {signal?: AbortSignal} = {}): Promise<ObjectReader> {
  if (backend.openReader) return backend.openReader(key, options)
  const stream = await backend.get(key, {signal: options.signal})
  const it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let chunk: Buffer = Buffer.alloc(0)
  let ended = false
  return {
    async read(dst, offset, length) {
      while (chunk.length === 0 && !ended) {
        const r = await it.next()
        if (r.done) ended = true
        else chunk = r.value
      }
      const n = Math.min(length, chunk.length)
      chunk.copy(dst, offset, 0, n)
      chunk = chunk.subarray(n)
      return n
    },
    async close() {
      stream.destroy()
    },
  }
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}
