import type {FileHandle} from 'node:fs/promises'

/**
 * Starts writing a large file back to disk while the rest of it is still being produced: a datasync
 * every WRITEBACK_EVERY bytes, in the thread pool, one at a time. Otherwise the kernel keeps the whole
 * file dirty until the final fsync, which then stalls for the disk to write all of it while nothing
 * else runs. Used for repository objects and restored WAL files.
 */
const WRITEBACK_EVERY = 32 * 1024 * 1024

export class EarlyWriteback {
  private pending = 0
  private running: Promise<void> = Promise.resolve()
  private error: unknown = null

  /** `enabled` false (a restore with --no-sync) makes it do nothing. */
  constructor(
    private readonly fh: FileHandle,
    private readonly enabled = true,
  ) {}

  wrote(n: number): void {
    if (!this.enabled) return
    this.pending += n
    if (this.pending < WRITEBACK_EVERY) return
    this.pending = 0
    this.running = this.running.then(() => this.fh.datasync()).catch((error: unknown) => {
      this.error ??= error
    })
  }

  /** Waits for the syncs in flight; rethrows the first that failed. */
  async settle(): Promise<void> {
    await this.running
    if (this.error) throw this.error
  }
}
