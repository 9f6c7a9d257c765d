/**
 * The content hash a backup records of every captured byte range and every repository object, and
 * that restore and verification check. A manifest names its algorithm (`hashAlgorithm`); backups
 * written before it was recorded (manifest format engram-ops-backup/1) used sha256.
 *
 * BLAKE3 by default: on the 2-core bench machine it hashed 1 GiB in 163 ms against sha256's 579 ms
 * (with the CPU's SHA extensions), and a backup hashes about 1.9 GiB per GiB of WAL (the captured bytes
 * and the compressed object), as does a restore. sha256 stays available (`--hash sha256`) for
 * operators who check what a backup recorded with sha256sum; both are cryptographic, 256-bit.
 */
import {createHash} from 'node:crypto'

import {ExitCode, OpsError} from './errors.js'
import {requireNative} from './native.js'

export const HASH_ALGORITHMS = ['blake3', 'sha256'] as const
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number]
export const DEFAULT_HASH_ALGORITHM: HashAlgorithm = 'blake3'

export function isHashAlgorithm(value: unknown): value is HashAlgorithm {
  return (HASH_ALGORITHMS as readonly unknown[]).includes(value)
}

/** An incremental hash; `digest` returns lowercase hex and ends it. */
export interface Hasher {
  update(data: Uint8Array): void
  digest(): string
}

const BLAKE3_MODULE = '@napi-rs/blake-hash'

type Blake3Module = {Blake3Hasher: new () => {update(data: Uint8Array): unknown; digest(format: 'hex'): string}}
let blake3Module: Blake3Module | null = null

/**
 * Loaded on first use, not at start-up: a platform without the prebuilt binary can still take sha256
 * backups and restore sha256 ones, and is told what is missing instead of failing to start.
 */
function blake3(): Blake3Module {
  if (!blake3Module) {
    try {
      blake3Module = requireNative<Blake3Module>(BLAKE3_MODULE)
    } catch (error) {
      throw new OpsError(`BLAKE3 is not available on this platform (${process.platform}-${process.arch}): ${(error as Error).message.split('\n')[0]}`, {
        code: 'BLAKE3_UNAVAILABLE',
        exit: ExitCode.unexpected,
        cause: error,
        suggestion: `Reinstall engram-ops so npm installs the ${BLAKE3_MODULE} binary for this platform, or take backups with --hash sha256.`,
      })
    }
  }
  return blake3Module
}

/** Throws the error `createHasher` would (unknown algorithm, BLAKE3 not installed), without hashing. */
export function ensureHashAlgorithm(algorithm: HashAlgorithm): void {
  if (algorithm === 'blake3') blake3()
  else if (algorithm !== 'sha256') throw new Error(`unknown hash algorithm ${JSON.stringify(algorithm)}`)
}

export function createHasher(algorithm: HashAlgorithm): Hasher {
  ensureHashAlgorithm(algorithm)
  if (algorithm === 'sha256') {
    const h = createHash('sha256')
    return {update: (data) => void h.update(data), digest: () => h.digest('hex')}
  }
  const h = new (blake3().Blake3Hasher)()
  return {update: (data) => void h.update(data), digest: () => h.digest('hex')}
}

export function hashOf(algorithm: HashAlgorithm, data: Uint8Array): string {
  const h = createHasher(algorithm)
  h.update(data)
  return h.digest()
}
