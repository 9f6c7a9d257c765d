import {Args, Flags} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {dataDirFlag, timeFlag} from '../../flags.js'
import {formatRfc3339} from '../../lib/engine/datetime.js'
import {dumpWal, type DumpFileEnd, type DumpRecord, resolveDumpTarget} from '../../lib/engine/inspect.js'
import {resolveDataDir} from '../../lib/engine/layout.js'
import {entryTypeFromName} from '../../lib/engine/record.js'
import {UsageError} from '../../lib/errors.js'
import {formatBytes} from '../../lib/ui/format.js'

export default class EngineWaldump extends OpsCommand {
  static override summary = 'Print WAL records one per line, like pg_waldump.'
  static override description = `Reads a data directory, one space's wal/ directory or a single WAL file, in Engram's read order, and
prints a line per record: space, file, offset, sequence, time, type, size, CRC status and episode id.
Damage is printed where the walk met it. Exit 0 when clean, 3 when damage was found, 15 when a FILE
is not an Engram WAL at all.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> /var/lib/engram',
    '<%= config.bin %> <%= command.id %> /var/lib/engram --space tenant-a --from 2026-11-28T14:00:00Z --to 2026-11-28T14:05:00Z',
    '<%= config.bin %> <%= command.id %> /var/lib/engram/default/wal/wal-0000000065edbce0.log --stats',
  ]

  static override args = {
    target: Args.string({description: 'Data directory, wal/ directory or WAL file (default: the data dir).'}),
  }

  static override flags = {
    'data-dir': dataDirFlag,
    space: Flags.string({char: 's', summary: 'Only this memory space (repeatable).', multiple: true}),
    from: timeFlag({summary: 'Only records with a timestamp at or after this time.'}),
    to: timeFlag({summary: 'Only records with a timestamp at or before this time.'}),
    type: Flags.string({
      char: 't',
      summary: 'Only records of this entry type: a name (EpisodeStore, MemoryDelete, …) or a number (repeatable).',
      multiple: true,
    }),
    stats: Flags.boolean({summary: 'Print only the summary, not one line per record.'}),
  }

  async run(): Promise<unknown> {
    const {args, flags} = await this.parse(EngineWaldump)
    const types = flags.type?.map((t) => {
      const n = /^\d+$/.test(t) ? Number(t) : entryTypeFromName(t)
      if (n === undefined) {
        throw new UsageError(`unknown entry type ${JSON.stringify(t)}`, {
          code: 'BAD_ENTRY_TYPE',
          suggestion: 'Use EpisodeStore, MemoryUpdate, MemoryDelete, Consolidation, Checkpoint, CompactionMarker or a number.',
        })
      }
      return n
    })
    const target = await resolveDumpTarget(args.target ?? resolveDataDir(flags['data-dir']), flags.space ?? [])
    for (const s of target.skipped) this.reporter.warn(`skipped ${s.path}: ${s.reason}`)
    const json = this.jsonEnabled()
    const ends: DumpFileEnd[] = []
    // In JSON mode records are streamed out as they are read, so memory stays flat on large dirs.
    // The opening is written with the first record, so a walk that fails first prints only the error.
    let first = true
    const stats = await dumpWal(
      target,
      {fromNs: flags.from, toNs: flags.to, types},
      (r) => {
        if (flags.stats) return
        if (json) {
          process.stdout.write(`${first ? '{\n  "records": [\n    ' : ',\n    '}${JSON.stringify(r)}`)
          first = false
        } else {
          this.out(formatRecord(r))
        }
      },
      (e) => {
        ends.push(e)
        if (!json && !flags.stats) this.out(formatEnd(e))
      },
      this.signal,
    )
    const damaged = stats.badPayloadCrc > 0 || stats.damagedFiles > 0 || stats.undecodable > 0 || target.skipped.length > 0
    if (damaged) this.markPartial()
    const summary = {target: target.path, kind: target.kind, stats, ends, skipped: target.skipped, warnings: this.reporter.warnings}
    if (json) {
      const body = JSON.stringify(summary, null, 2).slice(1, -1)
      process.stdout.write(flags.stats ? `{${body}}\n` : `${first ? '{\n  "records": [' : '\n  '}],${body}}\n`)
      return undefined
    }
    if (flags.stats) for (const e of ends) this.out(formatEnd(e))
    this.out(
      `${flags.stats ? '' : '\n'}${stats.files} files, ${formatBytes(stats.bytes)}, ${stats.records} records (${Object.entries(stats.byType)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'}), ${stats.shown} shown; ${stats.badPayloadCrc} bad payload CRC, ${stats.undecodable} undecodable, ${stats.damagedFiles} files ending on damage`,
    )
    return summary
  }
}

function formatRecord(r: DumpRecord): string {
  const time = formatRfc3339(BigInt(r.timestampNs))
  const id = r.id === undefined ? (r.error ? `decode error: ${r.error}` : '') : `id=${r.id}`
  return `${r.space} ${r.file} off=${r.offset} seq=${r.sequence} time=${time} type=${r.type} size=${r.size} crc=${r.crc} ${id}`.trimEnd()
}

function formatEnd(e: DumpFileEnd): string {
  const {end} = e
  switch (end.kind) {
    case 'bad_header':
      return `${e.space} ${e.file} off=${end.offset} BAD HEADER: ${end.error}; the remaining ${end.bytesDiscarded} bytes are unreadable`
    case 'torn_payload':
      return `${e.space} ${e.file} off=${end.offset} TORN PAYLOAD: ${end.payloadBytesPresent} of ${end.header.payloadSize} payload bytes present; Engram will refuse to open this space (truncate to ${end.truncateTo})`
    case 'partial_header':
      return `${e.space} ${e.file} off=${end.offset} partial header: ${end.bytes} trailing bytes (a clean end for Engram)`
    default:
      return `${e.space} ${e.file} end at ${end.offset}`
  }
}
