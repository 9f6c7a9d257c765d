/**
 * sha256 computed on another thread, for restores of sha256 backups. Hashes run on the thread that
 * calls them, and a restore hashes every byte twice (each object as stored, each file as restored):
 * 1.9 GiB for a 1 GiB data directory, with sha256 about 1.2 s of a main thread that was the restore's
 * bottleneck while the second core waited. BLAKE3 (~6 GB/s) is hashed on the calling thread even
 * here: copying its bytes to the worker cost more than hashing them. The bytes are copied into
 * transferable blocks (a copy costs a tenth of hashing them with sha256), sent in order to a worker
 * that keeps one hash per stream, and the blocks come back for reuse; at most BLOCKS blocks are out
 * at a time, so memory stays bounded whatever the data size.
 */
import {Worker} from 'node:worker_threads'

import {createHasher, type HashAlgorithm} from './digest.js'
import {ExitCode, OpsError} from './errors.js'
import {Pool} from './pool.js'

/** An incremental hash. `update` may wait for a free block; await it before the next call. */
export interface StreamHash {
  update(data: Uint8Array): Promise<void>
  /** Hex digest of everything passed to update. */
  digest(): Promise<string>
}

export interface HashSource {
  create(algorithm: HashAlgorithm): StreamHash
  close(): Promise<void>
}

const BLOCK = 4 * 1024 * 1024
const BLOCKS = 4

// Plain CommonJS for an eval worker: no file to find next to the compiled module, nothing to load.
const WORKER_SOURCE = `
const {parentPort} = require('node:worker_threads')
const {createHash} = require('node:crypto')
const hashes = new Map()
parentPort.on('message', (m) => {
  if (m.block) {
    const bytes = new Uint8Array(m.block)
    for (let i = 0; i < m.segments.length; i += 3) {
      const id = m.segments[i]
      let h = hashes.get(id)
      if (!h) hashes.set(id, (h = createHash('sha256')))
      h.update(bytes.subarray(m.segments[i + 1], m.segments[i + 2]))
    }
    parentPort.postMessage({block: m.block}, [m.block])
  } else {
    const h = hashes.get(m.digest) ?? createHash('sha256')
    hashes.delete(m.digest)
    parentPort.postMessage({digest: m.digest, hex: h.digest('hex')})
  }
})
`

/** Hashes on the calling thread: BLAKE3, and small sha256 jobs, where a worker would cost more than it saves. */
export class InlineHashes implements HashSource {
  create(algorithm: HashAlgorithm): StreamHash {
    const h = createHasher(algorithm)
    return {
      update: async (data) => h.update(data),
      digest: async () => h.digest(),
    }
  }

  async close(): Promise<void> {}
}

export class WorkerHashes implements HashSource {
  private readonly worker: Worker
  private readonly blocks = new Pool<ArrayBuffer>(Array.from({length: BLOCKS}, () => new ArrayBuffer(BLOCK)))
  private readonly digests = new Map<number, {resolve: (hex: string) => void; reject: (e: Error) => void}>()
  /** The block being filled: its bytes and [stream, start, end] triples. */
  private current: {bytes: Uint8Array; used: number; segments: number[]} | null = null
  private nextId = 0
  private failure: OpsError | null = null
  private readonly inline = new InlineHashes()

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, {eval: true, resourceLimits: {maxYoungGenerationSizeMb: 2}})
    this.worker.on('message', (m: {block?: ArrayBuffer; digest?: number; hex?: string}) => {
      if (m.block) this.blocks.release(m.block)
      else {
        this.digests.get(m.digest!)?.resolve(m.hex!)
        this.digests.delete(m.digest!)
      }
    })
    this.worker.on('error', (error) => this.fail(`the hashing worker failed: ${error.message}`, error))
    this.worker.on('exit', (code) => this.fail(`the hashing worker stopped (exit code ${code})`))
  }

  /**
   * Fails every waiting update and digest, and all later ones. An OpsError of its own, so a restore
   * reports a broken worker as what it is, not as a damaged archive.
   */
  private fail(message: string, cause?: unknown): void {
    this.failure ??= new OpsError(message, {
      code: 'HASH_WORKER_FAILED',
      exit: ExitCode.unexpected,
      cause,
      suggestion: 'Run the command again; if it fails the same way, report it with the output of --verbose.',
    })
    this.blocks.fail(this.failure)
    for (const d of this.digests.values()) d.reject(this.failure)
    this.digests.clear()
  }

  create(algorithm: HashAlgorithm): StreamHash {
    if (algorithm !== 'sha256') return this.inline.create(algorithm)
    const id = this.nextId++
    return {update: (data) => this.update(id, data), digest: () => this.digest(id)}
  }

  private async update(id: number, data: Uint8Array): Promise<void> {
    let offset = 0
    while (offset < data.length) {
      if (!this.current) {
        const block = await this.blocks.acquire()
        // Another stream may have started a block while this one waited: use that one.
        if (this.current) {
          this.blocks.release(block)
          continue
        }
        this.current = {bytes: new Uint8Array(block), used: 0, segments: []}
      }
      const c = this.current
      const n = Math.min(data.length - offset, BLOCK - c.used)
      c.bytes.set(data.subarray(offset, offset + n), c.used)
      c.segments.push(id, c.used, c.used + n)
      c.used += n
      offset += n
      if (c.used === BLOCK) this.send()
    }
  }

  private send(): void {
    const c = this.current
    if (!c) return
    this.current = null
    this.worker.postMessage({block: c.bytes.buffer, segments: c.segments}, [c.bytes.buffer as ArrayBuffer])
  }

  private digest(id: number): Promise<string> {
    if (this.failure) return Promise.reject(this.failure)
    // The block being filled may hold this stream's last bytes: it goes first (messages keep their order).
    this.send()
    return new Promise((resolve, reject) => {
      this.digests.set(id, {resolve, reject})
      this.worker.postMessage({digest: id})
    })
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit')
    this.fail('the hashing worker was closed')
    await this.worker.terminate()
  }
}

/**
 * Jobs smaller than this hash on the calling thread (a worker takes ~20 ms to start). Callers count
 * only sha256 bytes: BLAKE3 is fast enough that copying to the worker costs more than it saves.
 */
export const WORKER_HASH_BYTES = 32 * 1024 * 1024

export function hashSource(expectedBytes: number): HashSource {
  return expectedBytes >= WORKER_HASH_BYTES ? new WorkerHashes() : new InlineHashes()
}
