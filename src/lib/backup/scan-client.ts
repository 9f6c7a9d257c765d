/**
 * Runs backup scans (pass 1) in a worker thread. On two cores the main thread is the bottleneck of a
 * backup (it feeds the compressor, hashes the archive and writes it); moving the CRC walk and the
 * capture hash off it let the next space be scanned while the current one is archived. Small ranges
 * (an incremental's appended bytes) are scanned on the main thread: starting the worker and loading
 * its modules takes about 0.1 s, more than scanning a few MiB.
 */
import {Worker} from 'node:worker_threads'

import type {HashAlgorithm} from '../digest.js'
import {fsError} from '../errors.js'
import {type CaptureScan, type OpenSource, type Sample, scanCapture} from './capture.js'

export interface ScanRequest {
  id: number
  fd: number
  name: string
  size: number
  start: number
  algorithm: HashAlgorithm
  samples: Sample[]
  sampleSize: number
  seen: number
}

export type ScanReply =
  | {id: number; ok: true; scan: CaptureScan; samples: Sample[]; seen: number}
  | {id: number; ok: false; message: string; errno?: string}

/**
 * The compiled worker script. Tests run the TypeScript sources, which Node cannot start as a worker
 * (their imports name .js files): they use the build in dist/, which `npm test` makes first.
 */
function workerUrl(): URL {
  return import.meta.url.endsWith('.ts') ? new URL('../../../dist/lib/backup/scan-worker.js', import.meta.url) : new URL('scan-worker.js', import.meta.url)
}

/**
 * Backups that scan less than this in all are scanned on the main thread. The main thread scanned an
 * incremental's 11 MiB per space in about 0.05 s; the worker takes about 0.1 s to start, longer while
 * archives are compressed beside it.
 * At 32 MiB a 4 GiB data directory's 1 % incremental (44 MiB in 4 spaces) started the worker for its
 * third space, where the start stalled the whole backup (a 0.37 s scan instead of 0.05 s).
 */
export const INLINE_SCAN_BYTES = 64 * 1024 * 1024

export class Scanner {
  private worker: Worker | null = null
  private readonly waiting = new Map<number, {resolve: (r: ScanReply) => void; reject: (e: unknown) => void}>()
  private nextId = 0
  private failure: Error | null = null
  /** Bytes scanned on the main thread so far: a backup of many small files moves to the worker too. */
  private inlineBytes = 0
  /** Set by `expect`: every scan on the main thread (true), or the worker for all but `onMainThread` scans (false). */
  private inlineAll: boolean | null = null

  /**
   * Tells the scanner how many bytes the backup will scan in all (an estimate taken before): under
   * INLINE_SCAN_BYTES every scan stays on the main thread; over it the worker is started now, so its
   * start overlaps the first space's scan instead of delaying a later space.
   */
  expect(totalBytes: number): void {
    this.inlineAll = totalBytes < INLINE_SCAN_BYTES
    if (!this.inlineAll) this.start()
  }

  /** Whether the worker thread has been started. */
  get workerStarted(): boolean {
    return this.worker !== null
  }

  private start(): Worker {
    if (this.worker) return this.worker
    // The scan's garbage is short-lived (a few objects per record): a 2 MiB young generation holds it,
    // where the default reserved 10 MiB more of the backup's peak memory.
    this.worker = new Worker(workerUrl(), {resourceLimits: {maxYoungGenerationSizeMb: 2}})
    this.worker.on('message', (reply: ScanReply) => {
      const w = this.waiting.get(reply.id)
      this.waiting.delete(reply.id)
      w?.resolve(reply)
    })
    const fail = (error: Error) => {
      this.failure ??= error
      for (const w of this.waiting.values()) w.reject(error)
      this.waiting.clear()
    }
    this.worker.on('error', fail)
    this.worker.on('exit', (code) => fail(new Error(`the backup scan worker stopped (exit code ${code})`)))
    return this.worker
  }

  /**
   * Scans [start, src.size) of `src`; `samples` and `seen` carry the space's reservoir across files.
   * `onMainThread` keeps this scan on the main thread whatever its size (when nothing else is there to run).
   */
  async scan(src: OpenSource, start: number, algorithm: HashAlgorithm, samples: Sample[], sampleSize: number, seen: {n: number}, signal?: AbortSignal, onMainThread = false): Promise<CaptureScan> {
    signal?.throwIfAborted()
    const bytes = src.size - start
    if (onMainThread || (this.inlineAll ?? (!this.worker && this.inlineBytes + bytes < INLINE_SCAN_BYTES))) {
      this.inlineBytes += bytes
      return scanCapture(src, start, algorithm, samples, sampleSize, seen, signal)
    }
    const worker = this.start()
    if (this.failure) throw this.failure
    const id = this.nextId++
    let onAbort = () => {}
    const reply = await new Promise<ScanReply>((resolve, reject) => {
      this.waiting.set(id, {resolve, reject})
      onAbort = () => {
        this.waiting.delete(id)
        reject(signal!.reason)
      }
      signal?.addEventListener('abort', onAbort, {once: true})
      worker.postMessage({id, fd: src.handle.fd, name: src.name, size: src.size, start, algorithm, samples, sampleSize, seen: seen.n} satisfies ScanRequest)
    }).finally(() => signal?.removeEventListener('abort', onAbort))
    if (!reply.ok) throw fsError(Object.assign(new Error(reply.message), {code: reply.errno}), 'scan WAL file', src.name)
    samples.splice(0, samples.length, ...reply.samples)
    seen.n = reply.seen
    return reply.scan
  }

  /** Stops the worker; a scan still waiting fails (its file may be half read). */
  async close(): Promise<void> {
    this.worker?.removeAllListeners('exit')
    await this.worker?.terminate()
    const stopped = new Error('the backup scan worker was stopped')
    for (const w of this.waiting.values()) w.reject(stopped)
    this.waiting.clear()
  }
}
