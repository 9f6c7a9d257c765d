/**
 * A fixed set of reusable things (frame buffers, zstd compressors, hashing blocks) handed out one at a
 * time; `acquire` waits while all are out. Allocating afresh each time cost more than the work they do
 * (page faults, garbage collection, a zstd context per frame). After `fail`, waiting and later
 * acquisitions reject with that error.
 */
export class Pool<T> {
  private readonly free: T[]
  private readonly waiting: Array<{resolve: (item: T) => void; reject: (error: unknown) => void}> = []
  private failure: {error: unknown} | null = null

  constructor(items: T[]) {
    this.free = [...items]
  }

  acquire(): Promise<T> {
    if (this.failure) return Promise.reject(this.failure.error)
    const item = this.free.pop()
    return item === undefined ? new Promise((resolve, reject) => this.waiting.push({resolve, reject})) : Promise.resolve(item)
  }

  release(item: T): void {
    const next = this.waiting.shift()
    if (next) next.resolve(item)
    else this.free.push(item)
  }

  fail(error: unknown): void {
    this.failure ??= {error}
    for (const w of this.waiting.splice(0)) w.reject(this.failure.error)
  }
}
