import {Flags} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {repoFlag} from '../../flags.js'
import {parseCompression} from '../../lib/repo/compression.js'
import {type RepoConfig, Repository} from '../../lib/repo/repository.js'
import {openBackend} from '../../lib/repo/url.js'

export default class RepoInit extends OpsCommand {
  static override summary = 'Create a backup repository.'
  static override examples = ['<%= config.bin %> <%= command.id %> --repo /var/backups/engram', '<%= config.bin %> <%= command.id %> --repo file:///mnt/nas/engram --compression zstd:6']
  static override flags = {
    repo: repoFlag,
    compression: Flags.string({summary: 'Default compression of backups: zstd, zstd:LEVEL (1-19) or none.', default: 'zstd:3'}),
  }

  async run(): Promise<{repo: string; config: RepoConfig}> {
    const {flags} = await this.parse(RepoInit)
    const backend = await openBackend(flags.repo)
    const repo = await Repository.init(backend, parseCompression(flags.compression))
    this.out(`created repository ${repo.config.id} at ${backend.url} (compression ${flags.compression})`)
    return {repo: backend.url, config: repo.config}
  }
}
