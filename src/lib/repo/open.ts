import {Repository} from './repository.js'
import {openBackend} from './url.js'

/** Opens an existing repository by URL (exit 11 when there is none). */
export async function openRepository(url: string): Promise<Repository> {
  return Repository.open(await openBackend(url))
}
