/**
 * Encryption at rest. Every object except the repository config and lock leases is encrypted with
 * AES-256-GCM in 1 MiB chunks, so it streams with flat memory and every chunk is authenticated:
 *
 *   "EOPSENC1" ‖ nonce prefix (8 random bytes) ‖ { ciphertext_i ‖ tag_i (16) }…
 *   nonce_i = prefix ‖ u32be(i);  AAD_i = object key ‖ 0x00 ‖ u32be(i) ‖ final flag (1 byte)
 *
 * The object key in the AAD stops objects being swapped, the index stops chunks being reordered, the
 * final flag stops truncation. The repository data key (32 random bytes) is stored wrapped by a key
 * derived from the passphrase with scrypt; changing the passphrase rewraps it without touching data.
 */
import {createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb, type ScryptOptions} from 'node:crypto'
import {Readable} from 'node:stream'

import {ExitCode, IntegrityError, OpsError} from '../errors.js'
import {type GetOptions, type ObjectInfo, type PutOptions, type RepositoryBackend} from './backend.js'
import {LOCK_KEY, REPO_CONFIG_KEY} from './layout.js'

const MAGIC = Buffer.from('EOPSENC1')
const HEADER = 16
const CHUNK = 1024 * 1024
const TAG = 16

export interface EncryptionConfig {
  cipher: 'aes-256-gcm-chunked-1MiB'
  kdf: {name: 'scrypt'; N: number; r: number; p: number; salt: string}
  /** nonce (12) ‖ ciphertext (32) ‖ tag (16), base64. */
  wrappedKey: string
}

function scrypt(passphrase: string, salt: Buffer, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(passphrase, salt, 32, o, (e, k) => (e ? reject(e) : resolve(k))))
}

async function kek(passphrase: string, kdf: EncryptionConfig['kdf']): Promise<Buffer> {
  return scrypt(passphrase, Buffer.from(kdf.salt, 'base64'), {N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * 1024 * 1024})
}

export async function wrapKey(dataKey: Buffer, passphrase: string): Promise<EncryptionConfig> {
  const kdf = {name: 'scrypt' as const, N: 2 ** 15, r: 8, p: 1, salt: randomBytes(16).toString('base64')}
  const nonce = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', await kek(passphrase, kdf), nonce)
  const ct = Buffer.concat([c.update(dataKey), c.final()])
  return {cipher: 'aes-256-gcm-chunked-1MiB', kdf, wrappedKey: Buffer.concat([nonce, ct, c.getAuthTag()]).toString('base64')}
}

export async function unwrapKey(config: EncryptionConfig, passphrase: string): Promise<Buffer> {
  const raw = Buffer.from(config.wrappedKey, 'base64')
  const d = createDecipheriv('aes-256-gcm', await kek(passphrase, config.kdf), raw.subarray(0, 12))
  d.setAuthTag(raw.subarray(raw.length - 16))
  try {
    return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()])
  } catch {
    throw new OpsError('wrong passphrase for this repository (its key does not unwrap)', {
      code: 'WRONG_PASSPHRASE',
      exit: ExitCode.permission,
      suggestion: 'Check ENGRAM_OPS_PASSPHRASE or the file given with --passphrase-file.',
    })
  }
}

function aad(key: string, index: number, final: boolean): Buffer {
  const k = Buffer.from(key, 'utf8')
  const b = Buffer.alloc(k.length + 6)
  k.copy(b, 0)
  b.writeUInt32BE(index, k.length + 1)
  b[k.length + 5] = final ? 1 : 0
  return b
}

function nonce(prefix: Buffer, index: number): Buffer {
  const n = Buffer.alloc(12)
  prefix.copy(n, 0)
  n.writeUInt32BE(index, 8)
  return n
}

/** The sealed chunk as ciphertext and tag (GCM's final() adds no bytes; joining them would copy the chunk). */
function sealChunk(dataKey: Buffer, key: string, prefix: Buffer, index: number, plain: Buffer, final: boolean): Buffer[] {
  const c = createCipheriv('aes-256-gcm', dataKey, nonce(prefix, index))
  c.setAAD(aad(key, index, final))
  const out = c.update(plain)
  c.final()
  return [out, c.getAuthTag()]
}

function openChunk(dataKey: Buffer, key: string, prefix: Buffer, index: number, sealed: Buffer, final: boolean): Buffer {
  const d = createDecipheriv('aes-256-gcm', dataKey, nonce(prefix, index))
  d.setAAD(aad(key, index, final))
  d.setAuthTag(sealed.subarray(sealed.length - TAG))
  try {
    const out = d.update(sealed.subarray(0, sealed.length - TAG))
    d.final() // checks the tag (adds no bytes): nothing is returned before it passes
    return out
  } catch {
    throw new IntegrityError(`${key}: chunk ${index} fails its authentication tag (damaged, truncated or tampered with)`, {
      code: 'AUTH_TAG_MISMATCH',
      subject: key,
      suggestion: 'The object cannot be trusted; restore an older backup.',
    })
  }
}

export async function* encryptStream(dataKey: Buffer, key: string, source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const prefix = randomBytes(8)
  yield Buffer.concat([MAGIC, prefix])
  let pending: Buffer[] = []
  let length = 0
  let index = 0
  for await (const c of source) {
    pending.push(c)
    length += c.length
    // Hold back at least one byte so the last chunk is known when the source ends. Pieces are joined
    // once per arrival that completes a chunk, not once per chunk cut from them.
    if (length > CHUNK) {
      let all = Buffer.concat(pending, length)
      while (all.length > CHUNK) {
        yield* sealChunk(dataKey, key, prefix, index++, all.subarray(0, CHUNK), false)
        all = all.subarray(CHUNK)
      }
      pending = [all]
      length = all.length
    }
  }
  yield* sealChunk(dataKey, key, prefix, index, Buffer.concat(pending, length), true)
}

export async function* decryptStream(dataKey: Buffer, key: string, source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let buf: Buffer = Buffer.alloc(0)
  let prefix: Buffer | null = null
  let index = 0
  // Pieces (an S3 body arrives in small ones) are collected and joined once a sealed chunk is
  // complete: joining at every piece copied each chunk dozens of times.
  let parts: Buffer[] = []
  let length = 0
  for await (const c of source) {
    parts.push(c as Buffer)
    length += (c as Buffer).length
    if (length <= (prefix ? CHUNK + TAG : HEADER - 1)) continue
    buf = parts.length === 1 ? parts[0] : Buffer.concat(parts, length)
    if (!prefix) {
      if (!buf.subarray(0, 8).equals(MAGIC)) throw new IntegrityError(`${key}: not an encrypted object`, {code: 'AUTH_TAG_MISMATCH', subject: key, suggestion: 'The object was replaced or damaged; restore an older backup.'})
      prefix = Buffer.from(buf.subarray(8, HEADER))
      buf = buf.subarray(HEADER)
    }
    // A full sealed chunk followed by more bytes is not the last one.
    while (buf.length > CHUNK + TAG) {
      yield openChunk(dataKey, key, prefix, index++, buf.subarray(0, CHUNK + TAG), false)
      buf = buf.subarray(CHUNK + TAG)
    }
    parts = [buf]
    length = buf.length
  }
  buf = Buffer.concat(parts, length)
  if (!prefix || buf.length < TAG) throw new IntegrityError(`${key}: encrypted object is truncated`, {code: 'AUTH_TAG_MISMATCH', subject: key, suggestion: 'The object is damaged; restore an older backup.'})
  yield openChunk(dataKey, key, prefix, index, buf, true)
}

/** Plaintext size of an encrypted object of `size` bytes. */
export function plainSize(size: number): number {
  const body = size - HEADER
  const chunks = Math.max(1, Math.ceil(body / (CHUNK + TAG)))
  return body - chunks * TAG
}

const exempt = (key: string) => key === REPO_CONFIG_KEY || key === LOCK_KEY || key.startsWith('locks/')

/** Wraps a backend so every object (but the config and locks) is encrypted at rest. */
export class EncryptedBackend implements RepositoryBackend {
  readonly url: string
  constructor(
    readonly inner: RepositoryBackend,
    private readonly dataKey: Buffer,
  ) {
    this.url = inner.url
  }

  private size(o: ObjectInfo): ObjectInfo {
    return exempt(o.key) ? o : {...o, size: plainSize(o.size)}
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const o = await this.inner.stat(key)
    return o && this.size(o)
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const o of this.inner.list(prefix)) yield this.size(o)
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    if (exempt(key)) return this.inner.get(key, options)
    if (options.range) throw new OpsError(`ranged reads of encrypted object ${key} are not supported`, {code: 'UNSUPPORTED', exit: ExitCode.unexpected})
    const body = await this.inner.get(key, {signal: options.signal})
    return Readable.from(decryptStream(this.dataKey, key, body))
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<ObjectInfo> {
    if (exempt(key)) return this.inner.put(key, body, options)
    let sealed: Buffer | Readable
    if (Buffer.isBuffer(body)) {
      const parts: Buffer[] = []
      for await (const c of encryptStream(this.dataKey, key, Readable.from([body]))) parts.push(c)
      sealed = Buffer.concat(parts)
    } else {
      sealed = Readable.from(encryptStream(this.dataKey, key, body))
    }
    const o = await this.inner.put(key, sealed, options)
    return this.size(o)
  }

  delete(keys: readonly string[]): Promise<void> {
    return this.inner.delete(keys)
  }

  async freeSpace(): Promise<number | null> {
    return (await this.inner.freeSpace?.()) ?? null
  }

  async serverTime(): Promise<Date | null> {
    return (await this.inner.serverTime?.()) ?? null
  }

  async sweepTemporaries(olderThanMs: number): Promise<number> {
    return (await this.inner.sweepTemporaries?.(olderThanMs)) ?? 0
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
