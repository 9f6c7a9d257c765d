import {Args, Flags} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {dataDirFlag} from '../../flags.js'
import {collectStats, type DataDirStats} from '../../lib/engine/inspect.js'
import {resolveDataDir} from '../../lib/engine/layout.js'
import {formatBytes, formatNs} from '../../lib/ui/format.js'
import {renderTable} from '../../lib/ui/table.js'

export default class EngineStats extends OpsCommand {
  static override summary = 'Summarise a data directory per memory space: files, bytes, records, damage, time range, memories.'
  static override description = `Replays every space exactly as Engram would on start (without changing anything) and reports what
it found. Exit 0 when clean, 3 when damage or invalid space directories were found.`

  static override examples = ['<%= config.bin %> <%= command.id %> /var/lib/engram', '<%= config.bin %> <%= command.id %> --space default --json']

  static override args = {
    'data-dir': Args.string({description: 'Engram data root (default: --data-dir, $ENGRAM_DATA_DIR or ./engram-data).'}),
  }

  static override flags = {
    'data-dir': dataDirFlag,
    space: Flags.string({char: 's', summary: 'Only this memory space (repeatable).', multiple: true}),
  }

  async run(): Promise<DataDirStats> {
    const {args, flags} = await this.parse(EngineStats)
    const stats = await collectStats(args['data-dir'] ?? resolveDataDir(flags['data-dir']), flags.space ?? [], this.signal)
    for (const s of stats.skipped) this.reporter.warn(`skipped ${s.path}: ${s.reason}`)
    if (stats.totals.damage > 0 || stats.skipped.length > 0) this.markPartial()
    this.out(
      renderTable(
        ['space', 'files', 'bytes', 'records', 'by type', 'damage', 'first', 'last', 'memories'],
        stats.spaces.map((s) => [
          s.space,
          s.files.length,
          formatBytes(s.bytes),
          s.records,
          Object.entries(s.recordsByType)
            .map(([k, v]) => `${k} ${v}`)
            .join('\n'),
          s.damage.length === 0 ? 'none' : `${s.damage.length}${s.engramOpens ? '' : ' (Engram will not open)'}`,
          formatNs(s.firstTimestampNs === null ? null : BigInt(s.firstTimestampNs)),
          formatNs(s.lastTimestampNs === null ? null : BigInt(s.lastTimestampNs)),
          s.memories,
        ]),
      ),
    )
    for (const s of stats.spaces) {
      for (const d of s.damage) this.out(`${s.space} ${d.file} off=${d.offset} ${d.kind}: ${d.detail}`)
    }
    this.out(
      `${stats.totals.spaces} spaces, ${stats.totals.files} files, ${formatBytes(stats.totals.bytes)}, ${stats.totals.records} records, ${stats.totals.memories} memories, ${stats.totals.damage} damage findings`,
    )
    return stats
  }
}
