/** An in-memory repository: a real implementation of the contract, for tests. */
import {Readable} from 'node:stream'

import {BackendError, readAll, type GetOptions, type ObjectInfo, type PutOptions, type RepositoryBackend} from '../backend.js'

export class MemoryBackend implements RepositoryBackend {
  readonly objects = new Map<string, {data: Buffer; modified: Date}>()
  constructor(readonly url = 'memory://') {}

  async stat(key: string): Promise<ObjectInfo | null> {
    const o = this.objects.get(key)
    return o ? {key, size: o.data.length, modified: o.modified} : null
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort()
    for (const key of keys) {
      const o = this.objects.get(key)
      if (o) yield {key, size: o.data.length, modified: o.modified}
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const o = this.objects.get(key)
    if (!o) throw new BackendError('not-found', `read ${key}: no such object`, {subject: key})
    const {offset = 0, length} = options.range ?? {}
    return Readable.from([o.data.subarray(offset, length === undefined ? undefined : offset + length)])
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<ObjectInfo> {
    // Read everything before publishing: the object appears whole or not at all.
    const data = Buffer.isBuffer(body) ? Buffer.from(body) : await readAll(body)
    options.signal?.throwIfAborted()
    if (options.ifAbsent && this.objects.has(key)) throw new BackendError('exists', `write ${key}: already exists`, {subject: key})
    const modified = new Date()
    this.objects.set(key, {data, modified})
    return {key, size: data.length, modified}
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const k of keys) this.objects.delete(k)
  }

  async close(): Promise<void> {}
}
