import {type OpenOptions, Repository} from './repository.js'
import {openBackend, type S3Overrides} from './url.js'

/** Opens an existing repository by URL (exit 11 when there is none, 13 for a wrong passphrase). */
export async function openRepository(url: string, o: OpenOptions & {s3?: S3Overrides} = {}): Promise<Repository> {
  return Repository.open(await openBackend(url, o.s3), o)
}
