import {Flags} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {repoFlags} from '../../flags.js'
import {parseCompression} from '../../lib/repo/compression.js'
import {type RepoConfig, Repository} from '../../lib/repo/repository.js'
import {openBackend} from '../../lib/repo/url.js'

export default class RepoInit extends OpsCommand {
  static override summary = 'Create a backup repository.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> --repo /var/backups/engram',
    '<%= config.bin %> <%= command.id %> --repo file:///mnt/nas/engram --compression zstd:6',
    'ENGRAM_OPS_PASSPHRASE=… <%= config.bin %> <%= command.id %> --repo s3://backups/engram?region=eu-west-1 --encryption',
  ]
  static override flags = {
    ...repoFlags,
    compression: Flags.string({summary: 'Default compression of backups: zstd, zstd:LEVEL (1-19) or none.', default: 'zstd:1'}),
    encryption: Flags.boolean({summary: 'Encrypt every backup object (AES-256-GCM) with a key wrapped by the passphrase ($ENGRAM_OPS_PASSPHRASE or --passphrase-file).'}),
  }

  async run(): Promise<{repo: string; config: RepoConfig}> {
    const {flags} = await this.parse(RepoInit)
    const backend = await openBackend(flags.repo)
    const passphrase = flags.encryption ? await this.passphrase(flags['passphrase-file']) : undefined
    const repo = await Repository.init(backend, parseCompression(flags.compression), {encrypt: flags.encryption, passphrase})
    this.out(`created ${flags.encryption ? 'encrypted ' : ''}repository ${repo.config.id} at ${backend.url} (compression ${flags.compression})`)
    if (flags.encryption) this.out('keep the passphrase safe: without it no backup in this repository can be read')
    return {repo: backend.url, config: repo.config}
  }
}
