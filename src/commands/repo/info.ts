import {OpsCommand} from '../../base-command.js'
import {repoFlags} from '../../flags.js'
import type {RepoConfig} from '../../lib/repo/repository.js'
import {formatBytes} from '../../lib/ui/format.js'

export default class RepoInfo extends OpsCommand {
  static override summary = 'Show a repository: its id, format, compression and what it holds.'
  static override examples = ['<%= config.bin %> <%= command.id %> --repo /var/backups/engram']
  static override flags = {...repoFlags}

  async run(): Promise<{repo: string; config: RepoConfig; backups: number; incomplete: number; bytes: number; newest: string | null}> {
    const {flags} = await this.parse(RepoInfo)
    const repo = await this.openRepo(flags)
    const all = await repo.backups()
    // In manifest time order: ids sort by second and then by type, so "newest" by id could be wrong.
    const complete = await repo.completeBackups(all)
    const result = {
      repo: repo.backend.url,
      config: repo.config,
      backups: complete.length,
      incomplete: all.length - complete.length,
      bytes: all.reduce((a, b) => a + b.bytes, 0),
      newest: complete.at(-1)?.id ?? null,
    }
    this.out(`repository ${repo.config.id} at ${result.repo}`)
    this.out(`  format ${repo.config.format}, created ${repo.config.createdAt}, compression ${repo.config.compression.codec === 'zstd' ? `zstd:${repo.config.compression.level}` : 'none'}`)
    this.out(`  ${result.backups} complete backups${result.incomplete ? `, ${result.incomplete} incomplete (removed by the next backup or prune)` : ''}, ${formatBytes(result.bytes)}; newest ${result.newest ?? '-'}`)
    return result
  }
}
