import {readFile} from 'node:fs/promises'

import {fsError} from '../errors.js'
import {type OpenOptions, Repository} from './repository.js'
import {openBackend, type S3Overrides} from './url.js'

/** Opens an existing repository by URL (exit 11 when there is none, 13 for a wrong passphrase). */
export async function openRepository(url: string, o: OpenOptions & {s3?: S3Overrides} = {}): Promise<Repository> {
  return Repository.open(await openBackend(url, o.s3), o)
}

/** The passphrase of an encrypted repository: from a file, else the variable `env`. Never printed. */
export async function readPassphrase(file: string | undefined, env = 'ENGRAM_OPS_PASSPHRASE'): Promise<string | undefined> {
  if (file) {
    try {
      return (await readFile(file, 'utf8')).replace(/\r?\n$/, '')
    } catch (error) {
      throw fsError(error, 'read passphrase file', file)
    }
  }
  return process.env[env] || undefined
}

/** Opens the repository a command names: `--repo`, with the passphrase from `--passphrase-file` or the environment. */
export async function openRepositoryFromFlags(flags: {repo: string; 'passphrase-file'?: string}, s3?: S3Overrides): Promise<Repository> {
  return openRepository(flags.repo, {passphrase: await readPassphrase(flags['passphrase-file']), s3})
}
