import {Flags} from '@oclif/core'

import {OpsCommand} from '../../../base-command.js'
import {repoFlags} from '../../../flags.js'
import {UsageError} from '../../../lib/errors.js'

export default class RepoKeyChange extends OpsCommand {
  static override summary = "Change an encrypted repository's passphrase (rewraps its key; no data is rewritten)."
  static override examples = ['ENGRAM_OPS_PASSPHRASE=old ENGRAM_OPS_NEW_PASSPHRASE=new <%= config.bin %> <%= command.id %> --repo /var/backups/engram']
  static override flags = {
    ...repoFlags,
    'new-passphrase-file': Flags.string({summary: 'File holding the new passphrase (default: $ENGRAM_OPS_NEW_PASSPHRASE).', helpValue: 'FILE'}),
  }

  async run(): Promise<{repo: string; changed: true}> {
    const {flags} = await this.parse(RepoKeyChange)
    const oldPassphrase = await this.passphrase(flags['passphrase-file'])
    const newPassphrase = await this.passphrase(flags['new-passphrase-file'], 'ENGRAM_OPS_NEW_PASSPHRASE')
    if (!newPassphrase) throw new UsageError('no new passphrase given', {code: 'PASSPHRASE_MISSING', suggestion: 'Set ENGRAM_OPS_NEW_PASSPHRASE or pass --new-passphrase-file FILE.'})
    const repo = await this.openRepo(flags)
    await repo.changePassphrase(oldPassphrase!, newPassphrase)
    this.out(`changed the passphrase of repository ${repo.config.id}; backups are untouched and read with the new passphrase`)
    return {repo: repo.backend.url, changed: true}
  }
}
