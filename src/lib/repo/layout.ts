/** Object keys of a repository. The same on every backend. */
export const REPO_CONFIG_KEY = 'engram-ops-repo.json'
export const BACKUPS_PREFIX = 'backups/'
export const LOCK_KEY = 'locks/repository.lock'

export const manifestKey = (id: string) => `backups/${id}/manifest.json`
export const archiveKey = (id: string, space: string, ext: string) => `backups/${id}/${space}.tar${ext}`
export const verificationKey = (id: string) => `backups/${id}/verification.json`
export const backupPrefix = (id: string) => `backups/${id}/`

/** The backup id of a key under backups/, or null. */
export function backupIdOfKey(key: string): string | null {
  const m = /^backups\/([^/]+)\//.exec(key)
  return m ? m[1] : null
}
