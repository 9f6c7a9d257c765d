import {Flags} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {bytesFlag, dataDirFlag, durationFlag, timeFlag} from '../../flags.js'
import {generateData, type GenerateResult} from '../../lib/engine/generate.js'
import {isValidSpaceId, resolveDataDir} from '../../lib/engine/layout.js'
import {acquireDataDirLock} from '../../lib/engine/lock.js'
import {UsageError} from '../../lib/errors.js'
import {formatBytes, formatDuration, formatRate} from '../../lib/ui/format.js'

/** A fixed default so the same flags always give the same bytes. */
const DEFAULT_START_NS = 1_795_000_000_000_000_000n

export default class EngineGenerate extends OpsCommand {
  static override summary = 'Write deterministic, realistic Engram data (for tests, benchmarks and demos).'
  static override description = `Writes episodes with sentence-like content, metadata, participants and 768-d unit embeddings from a
seeded PRNG into Engram WAL files. The same flags always produce the same bytes. Timestamps spread
evenly (with jitter) over --window starting at --start; the WAL file is named after --start.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --data-dir /tmp/engram --spaces 3 --episodes 2000',
    '<%= config.bin %> <%= command.id %> --data-dir /tmp/engram --size 1GiB',
    '<%= config.bin %> <%= command.id %> --data-dir /tmp/engram --episodes 100 --append --start 2026-11-28T15:00:00Z',
  ]

  static override flags = {
    'data-dir': dataDirFlag,
    spaces: Flags.integer({summary: 'Number of spaces: default, tenant-001, tenant-002, …', default: 1, min: 1, max: 1000}),
    space: Flags.string({char: 's', summary: 'Use these space ids instead of --spaces (repeatable).', multiple: true}),
    episodes: Flags.integer({char: 'n', summary: 'Episodes per space.', default: 1000, min: 1}),
    size: bytesFlag({summary: 'Total WAL bytes to write across all spaces (overrides --episodes), e.g. 1GiB.'}),
    seed: Flags.integer({summary: 'PRNG seed.', default: 42}),
    start: timeFlag({summary: 'Timestamp of the first record and WAL file creation time (default 2026-11-18T11:06:40Z).'}),
    window: durationFlag({summary: 'Time span the records spread over.', default: 3_600_000}),
    append: Flags.boolean({summary: "Append to each space's newest WAL file, continuing its sequence."}),
    // Spelled as restore's --no-sync (pg_basebackup's name); --no-fsync, the first name, still works.
    'no-sync': Flags.boolean({summary: 'Skip the fsync per batch (faster, not crash-safe).', aliases: ['no-fsync']}),
  }

  async run(): Promise<GenerateResult & {durationMs: number}> {
    const {flags} = await this.parse(EngineGenerate)
    const root = resolveDataDir(flags['data-dir'])
    const spaces = flags.space ?? Array.from({length: flags.spaces}, (_, i) => (i === 0 ? 'default' : `tenant-${String(i).padStart(3, '0')}`))
    const bad = spaces.filter((s) => !isValidSpaceId(s) || s !== s.trim())
    if (bad.length > 0) {
      throw new UsageError(`invalid space id ${bad.map((s) => JSON.stringify(s)).join(', ')}`, {
        code: 'BAD_SPACE_ID',
        suggestion: 'Space ids are 3-64 characters of a-z, 0-9, _ and -.',
      })
    }
    const {mkdir} = await import('node:fs/promises')
    await mkdir(root, {recursive: true})
    const lock = await acquireDataDirLock(root, 'engine generate')
    if (lock.brokeStale) this.reporter.warn(`broke a stale lock of dead pid ${lock.brokeStale.pid} (${lock.brokeStale.command})`)
    const started = Date.now()
    const total = flags.size
    try {
      const result = await generateData({
        root,
        spaces,
        episodes: flags.episodes,
        bytesPerSpace: total ? Math.ceil(total / spaces.length) : undefined,
        seed: flags.seed,
        startNs: flags.start ?? DEFAULT_START_NS,
        windowNs: BigInt(flags.window) * 1_000_000n,
        append: flags.append,
        fsync: !flags['no-sync'],
        signal: this.signal,
        onProgress: (bytes) => this.reporter.progress({phase: 'generate', done: bytes, unit: 'bytes'}),
      })
      const durationMs = Date.now() - started
      this.out(
        `wrote ${result.episodes} episodes in ${result.spaces.length} spaces, ${formatBytes(result.bytes)} in ${formatDuration(durationMs)} (${formatRate(result.bytes, durationMs)}) to ${root}`,
      )
      return {...result, durationMs}
    } finally {
      await lock.release()
    }
  }
}
