/**
 * A backup repository on some backend: its config object, its backups (complete = has a manifest),
 * manifests and verification records. Knows keys and JSON, never bytes on an Engram disk.
 */
import {randomBytes, randomUUID} from 'node:crypto'

import {mapConcurrently} from '../concurrent.js'
import {isHashAlgorithm} from '../digest.js'
import {ExitCode, IntegrityError, OpsError} from '../errors.js'
import {BackendError, readAll, type RepositoryBackend} from './backend.js'
import {EncryptedBackend, type EncryptionConfig, unwrapKey, wrapKey} from './crypto.js'
import {BACKUPS_PREFIX, backupIdOfKey, manifestKey, REPO_CONFIG_KEY, verificationKey} from './layout.js'
import {byStartTime, type Manifest, MANIFEST_FORMAT, MANIFEST_FORMAT_1, selfChecksum, upgradeManifest} from './manifest.js'

export const REPO_FORMAT = 'engram-ops-repo/1'
/** Manifests (or verification records) read at once when listing backups. */
const MANIFEST_READS_IN_FLIGHT = 16

export interface RepoConfig {
  format: typeof REPO_FORMAT
  id: string
  createdAt: string
  /** Default codec for new backups. */
  compression: {codec: 'zstd'; level: number} | {codec: 'none'}
  /** Present when the repository is encrypted: how to unwrap its data key. */
  encryption?: EncryptionConfig
  /** sha256 of this JSON with `checksum` set to "": a damaged config is refused, never misread. */
  checksum: string
}

export interface OpenOptions {
  /** Needed for an encrypted repository; never logged. */
  passphrase?: string
}

export interface BackupEntry {
  id: string
  complete: boolean
  /** Object keys under backups/<id>/ (for cleanup of incomplete backups). */
  keys: string[]
  bytes: number
  manifest?: Manifest
}

export interface Verification {
  level: number
  ok: boolean
  at: string
  detail: string
}

function passphraseMissing(url: string): OpsError {
  return new OpsError(`repository ${url} is encrypted and no passphrase was given`, {
    code: 'PASSPHRASE_MISSING',
    exit: ExitCode.permission,
    suggestion: 'Set ENGRAM_OPS_PASSPHRASE or pass --passphrase-file FILE.',
  })
}

export class Repository {
  private constructor(
    readonly backend: RepositoryBackend,
    readonly config: RepoConfig,
  ) {}

  static async init(backend: RepositoryBackend, compression: RepoConfig['compression'], o: OpenOptions & {encrypt?: boolean} = {}): Promise<Repository> {
    const config: RepoConfig = {format: REPO_FORMAT, id: randomUUID(), createdAt: new Date().toISOString(), compression, checksum: ''}
    let dataKey: Buffer | null = null
    if (o.encrypt) {
      if (!o.passphrase) throw passphraseMissing(backend.url)
      dataKey = randomBytes(32)
      config.encryption = await wrapKey(dataKey, o.passphrase)
    }
    config.checksum = selfChecksum(config)
    try {
      await backend.put(REPO_CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`), {ifAbsent: true})
    } catch (error) {
      if (error instanceof BackendError && error.kind === 'exists') {
        throw new OpsError(`a repository already exists at ${backend.url}`, {
          code: 'REPO_EXISTS',
          exit: ExitCode.usage,
          subject: backend.url,
          suggestion: `Use it as it is (\`engram-ops repo info --repo ${backend.url}\`) or pick another location.`,
        })
      }
      throw error
    }
    return new Repository(dataKey ? new EncryptedBackend(backend, dataKey) : backend, config)
  }

  static async open(backend: RepositoryBackend, o: OpenOptions = {}): Promise<Repository> {
    let raw: Buffer
    try {
      raw = await readAll(await backend.get(REPO_CONFIG_KEY))
    } catch (error) {
      if (error instanceof BackendError && error.kind === 'not-found') {
        throw new OpsError(`no engram-ops repository at ${backend.url}`, {
          code: 'REPO_MISSING',
          exit: ExitCode.repositoryMissing,
          subject: backend.url,
          suggestion: `Create one with \`engram-ops repo init --repo ${backend.url}\`, or check the URL.`,
        })
      }
      throw error
    }
    let config: RepoConfig
    try {
      config = JSON.parse(raw.toString('utf8')) as RepoConfig
    } catch (error) {
      throw new IntegrityError(`repository config ${REPO_CONFIG_KEY} at ${backend.url} is not valid JSON`, {
        code: 'REPO_CONFIG_CORRUPT',
        subject: REPO_CONFIG_KEY,
        suggestion: 'Restore the file from a copy of the repository; backups themselves are intact if their manifests verify.',
        cause: error,
      })
    }
    if (typeof config !== 'object' || config === null || typeof config.checksum !== 'string' || selfChecksum(config) !== config.checksum) {
      throw new IntegrityError(`repository config ${REPO_CONFIG_KEY} at ${backend.url} fails its checksum`, {
        code: 'REPO_CONFIG_CORRUPT',
        subject: REPO_CONFIG_KEY,
        suggestion: 'Restore the file from a copy of the repository; backups themselves are intact if their manifests verify.',
      })
    }
    if (config.format !== REPO_FORMAT) {
      throw new OpsError(`repository at ${backend.url} has format ${JSON.stringify(config.format)}, this engram-ops reads ${REPO_FORMAT}`, {
        code: 'REPO_FORMAT',
        exit: ExitCode.configInvalid,
        subject: REPO_CONFIG_KEY,
        suggestion: 'Use the engram-ops version that created the repository.',
      })
    }
    if (config.encryption) {
      if (!o.passphrase) throw passphraseMissing(backend.url)
      return new Repository(new EncryptedBackend(backend, await unwrapKey(config.encryption, o.passphrase)), config)
    }
    return new Repository(backend, config)
  }

  /** Rewraps the data key of an encrypted repository with a new passphrase; the data is not touched. */
  async changePassphrase(oldPassphrase: string, newPassphrase: string): Promise<void> {
    if (!this.config.encryption) {
      throw new OpsError(`repository ${this.backend.url} is not encrypted`, {code: 'NOT_ENCRYPTED', exit: ExitCode.usage, suggestion: 'Only repositories created with `repo init --encryption` have a key.'})
    }
    const key = await unwrapKey(this.config.encryption, oldPassphrase)
    const config: RepoConfig = {...this.config, encryption: await wrapKey(key, newPassphrase), checksum: ''}
    config.checksum = selfChecksum(config)
    await this.backend.put(REPO_CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`))
    Object.assign(this.config, {encryption: config.encryption, checksum: config.checksum})
  }

  /** Every backup directory, complete or not, sorted by id (which sorts by start time). */
  async backups(): Promise<BackupEntry[]> {
    const byId = new Map<string, BackupEntry>()
    for await (const o of this.backend.list(BACKUPS_PREFIX)) {
      const id = backupIdOfKey(o.key)
      if (!id) continue
      let e = byId.get(id)
      if (!e) byId.set(id, (e = {id, complete: false, keys: [], bytes: 0}))
      e.keys.push(o.key)
      e.bytes += o.size
      if (o.key === manifestKey(id)) e.complete = true
    }
    const list = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : 1))
    // Several manifests are read at once (a request each on S3): one after another, reading the 305
    // manifests of a repository took most of a small incremental backup's time.
    await mapConcurrently(
      list.filter((e) => e.complete),
      async (e) => {
        e.manifest = await this.manifest(e.id)
      },
      MANIFEST_READS_IN_FLIGHT,
    )
    return list
  }

  /** Complete backups, ordered by their manifests' start times (of `entries`, a listing already taken, if given). */
  async completeBackups(entries?: BackupEntry[]): Promise<Manifest[]> {
    return (entries ?? (await this.backups()))
      .filter((b) => b.manifest)
      .map((b) => b.manifest!)
      .sort(byStartTime)
  }

  /**
   * The complete backups, as `completeBackups`, for a command that selects among them (--latest,
   * --all, a PITR target): a repository without any is a usage error (exit 2, NO_BACKUP).
   */
  async requireBackups(entries?: BackupEntry[]): Promise<Manifest[]> {
    const complete = await this.completeBackups(entries)
    if (complete.length === 0) throw new OpsError(`no complete backup in ${this.backend.url}`, {code: 'NO_BACKUP', exit: ExitCode.usage, subject: this.backend.url, suggestion: 'Take one with `engram-ops backup full`.'})
    return complete
  }

  /**
   * Verified manifests by id, as JSON in the current shape (format 1 upgraded once, when read; parsed
   * anew for each caller, who may change it). A manifest never changes once written, and one command
   * reads the same ones several times: a backup reads them to find its parent, then walks the chain.
   */
  private readonly manifests = new Map<string, string>()

  async manifest(id: string): Promise<Manifest> {
    const known = this.manifests.get(id)
    if (known !== undefined) return JSON.parse(known) as Manifest
    let raw: Buffer
    try {
      raw = await readAll(await this.backend.get(manifestKey(id)))
    } catch (error) {
      if (error instanceof BackendError && error.kind === 'not-found') {
        throw new OpsError(`backup ${id} does not exist (or never completed) in ${this.backend.url}`, {
          code: 'BACKUP_NOT_FOUND',
          exit: ExitCode.usage,
          subject: manifestKey(id),
          suggestion: `List the backups with \`engram-ops backup list --repo ${this.backend.url}\`.`,
        })
      }
      throw error
    }
    const text = raw.toString('utf8')
    let m: Manifest
    try {
      m = JSON.parse(text) as Manifest
    } catch (error) {
      throw new IntegrityError(`manifest of backup ${id} is not valid JSON`, {code: 'MANIFEST_CORRUPT', subject: manifestKey(id), cause: error, suggestion: 'The backup cannot be trusted; take a new full backup.'})
    }
    if (m.id !== id || selfChecksum(m) !== m.checksum) {
      throw new IntegrityError(`manifest of backup ${id} fails its checksum`, {
        code: 'MANIFEST_CORRUPT',
        subject: manifestKey(id),
        suggestion: 'The backup cannot be trusted; take a new full backup and prune this one.',
      })
    }
    // A manifest this version cannot read is not a damaged one: say so, so nobody prunes a good backup.
    const readable = m.format === MANIFEST_FORMAT ? isHashAlgorithm(m.hashAlgorithm) : m.format === MANIFEST_FORMAT_1
    if (!readable) {
      throw new OpsError(`backup ${id} was written by a newer engram-ops (manifest format ${JSON.stringify(m.format)}${m.format === MANIFEST_FORMAT ? `, hash ${JSON.stringify(m.hashAlgorithm)}` : ''}); this version reads ${MANIFEST_FORMAT_1} and ${MANIFEST_FORMAT}`, {
        code: 'MANIFEST_UNSUPPORTED',
        exit: ExitCode.configInvalid,
        subject: manifestKey(id),
        suggestion: 'Upgrade engram-ops to the version that wrote this backup, or newer.',
      })
    }
    const current = upgradeManifest(m)
    this.manifests.set(id, current === m ? text : JSON.stringify(current))
    return current
  }

  async writeManifest(m: Manifest): Promise<void> {
    const text = `${JSON.stringify(m, null, 2)}\n`
    await this.backend.put(manifestKey(m.id), Buffer.from(text))
    this.manifests.set(m.id, text)
  }

  /** Deletes a backup's manifest (first, so an interrupted deletion never leaves it looking complete). */
  async deleteManifest(id: string): Promise<void> {
    this.manifests.delete(id)
    await this.backend.delete([manifestKey(id)])
  }

  /** Manifests from the full backup down to `id`. */
  async chain(id: string): Promise<Manifest[]> {
    const out: Manifest[] = []
    let cur: string | null = id
    while (cur) {
      const m = await this.manifest(cur)
      out.unshift(m)
      cur = m.parent
      if (out.length > 10_000) throw new IntegrityError(`backup chain of ${id} loops`, {code: 'CHAIN_LOOP', subject: id})
    }
    return out
  }

  async recordVerification(id: string, v: Verification): Promise<void> {
    await this.backend.put(verificationKey(id), Buffer.from(`${JSON.stringify(v)}\n`))
  }

  /**
   * The last verification of each backup in `entries` (a listing), read several at once; a backup the
   * listing shows without a verification record is not asked for one.
   */
  async lastVerifications(entries: BackupEntry[]): Promise<Map<string, Verification | null>> {
    const out = new Map<string, Verification | null>()
    await mapConcurrently(
      entries,
      async (e) => {
        out.set(e.id, e.keys.includes(verificationKey(e.id)) ? await this.lastVerification(e.id) : null)
      },
      MANIFEST_READS_IN_FLIGHT,
    )
    return out
  }

  async lastVerification(id: string): Promise<Verification | null> {
    try {
      return JSON.parse((await readAll(await this.backend.get(verificationKey(id)))).toString('utf8')) as Verification
    } catch {
      return null
    }
  }
}
