/** Flag builders shared by commands. */
import {Flags} from '@oclif/core'

import {parseRfc3339} from './lib/engine/datetime.js'
import {UsageError} from './lib/errors.js'
import {DEFAULT_LOCK_WAIT_MS} from './lib/repo/lock.js'
import {parseBytes, parseDuration} from './lib/ui/format.js'

/** Engram's own rule: ENGRAM_DATA_DIR, else ./engram-data in the working directory. */
export const dataDirFlag = Flags.string({
  char: 'd',
  summary: 'Engram data root (default: $ENGRAM_DATA_DIR, else ./engram-data, as Engram).',
  env: 'ENGRAM_DATA_DIR',
  helpValue: 'DIR',
})

/** An RFC 3339 time (or a date, meaning midnight UTC), as ns since the epoch. */
export const timeFlag = Flags.custom<bigint>({
  helpValue: 'RFC3339',
  async parse(input) {
    const text = /^\d{4}-\d{2}-\d{2}$/.test(input) ? `${input}T00:00:00Z` : input
    const ns = parseRfc3339(text)
    if (ns === null) {
      throw new UsageError(`not an RFC 3339 time: ${JSON.stringify(input)}`, {
        code: 'BAD_TIME',
        suggestion: 'Write times like 2026-11-28T14:02:00Z (or 2026-11-28 for midnight UTC).',
      })
    }
    return ns
  },
})

export const bytesFlag = Flags.custom<number>({
  helpValue: 'SIZE',
  async parse(input) {
    const n = parseBytes(input)
    if (n === null) throw new UsageError(`not a size: ${JSON.stringify(input)}`, {code: 'BAD_SIZE', suggestion: 'Write sizes like 512MiB, 1GiB or 4096.'})
    return n
  },
})

/** A duration ("90s", "15m", "24h", "7d") in milliseconds. */
export const durationFlag = Flags.custom<number>({
  helpValue: 'DURATION',
  async parse(input) {
    const n = parseDuration(input)
    if (n === null) throw new UsageError(`not a duration: ${JSON.stringify(input)}`, {code: 'BAD_DURATION', suggestion: 'Write durations like 30s, 15m, 24h or 7d.'})
    return n
  },
})

/** The backup repository: a path, file:// URL or s3:// URL. */
export const repoFlag = Flags.string({
  char: 'r',
  summary: 'Backup repository: a path or file:// URL (env ENGRAM_OPS_REPO).',
  env: 'ENGRAM_OPS_REPO',
  required: true,
  helpValue: 'URL',
})

export const lockWaitFlag = durationFlag({
  summary: 'How long to wait for another engram-ops process holding the repository lock (then exit 12).',
  default: DEFAULT_LOCK_WAIT_MS,
})

export const passphraseFileFlag = Flags.string({
  summary: 'File holding the passphrase of an encrypted repository (default: $ENGRAM_OPS_PASSPHRASE).',
  helpValue: 'FILE',
})

/** Every command that opens a repository takes these. */
export const repoFlags = {repo: repoFlag, 'passphrase-file': passphraseFileFlag}
