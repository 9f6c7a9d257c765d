/**
 * A repository in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW):
 *   s3://bucket/prefix?endpoint=http://host:9000&region=us-east-1&forcePathStyle=true
 *       [&storageClass=STANDARD_IA][&sse=AES256|aws:kms][&sseKmsKeyId=…][&partSize=8MiB][&queueSize=4]
 * Credentials come from the AWS SDK's standard provider chain (environment, shared profile, …), never
 * from the URL. Streams are uploaded with lib-storage's multipart Upload: no temporary files, memory at
 * most partSize × queueSize, the multipart upload aborted on failure (S3 shows a multipart object only
 * once completed, so a put is atomic). Reads are streamed, optionally ranged; listing is paginated;
 * deletes are batched 1000 at a time. This is the only file that imports @aws-sdk.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3'
import {Upload} from '@aws-sdk/lib-storage'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'

import {UsageError} from '../../errors.js'
import {parseBytes} from '../../ui/format.js'
import {BackendError, readAll, type GetOptions, type ObjectInfo, type PutOptions, type RepositoryBackend} from '../backend.js'

export interface S3Options {
  bucket: string
  prefix: string
  endpoint?: string
  region?: string
  forcePathStyle?: boolean
  storageClass?: string
  sse?: string
  sseKmsKeyId?: string
  partSize?: number
  queueSize?: number
  maxAttempts?: number
  /** How long a request may stay without any progress before it fails and is retried (ms). */
  requestTimeoutMs?: number
}

export function parseS3Url(url: string): S3Options {
  const u = new URL(url)
  if (u.protocol !== 's3:' || !u.hostname) {
    throw new UsageError(`not an S3 repository URL: ${url}`, {code: 'BAD_REPO_URL', suggestion: 'Write it as s3://bucket/prefix?endpoint=…&region=…&forcePathStyle=true.'})
  }
  const q = u.searchParams
  const size = (name: string, fallback: number) => {
    const v = q.get(name)
    if (v === null) return fallback
    const n = parseBytes(v)
    if (n === null || n < 5 * 1024 * 1024) throw new UsageError(`${name}=${v} in the repository URL is not a size of at least 5MiB`, {code: 'BAD_REPO_URL', suggestion: `Use e.g. ${name}=8MiB.`})
    return n
  }
  const queueSize = Number(q.get('queueSize') ?? 4)
  if (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > 64) throw new UsageError(`queueSize=${q.get('queueSize')} must be 1-64`, {code: 'BAD_REPO_URL'})
  return {
    bucket: u.hostname,
    prefix: u.pathname.replace(/^\/+/, '').replace(/\/?$/, u.pathname.length > 1 ? '/' : ''),
    endpoint: q.get('endpoint') ?? undefined,
    region: q.get('region') ?? undefined,
    forcePathStyle: q.get('forcePathStyle') === 'true',
    storageClass: q.get('storageClass') ?? undefined,
    sse: q.get('sse') ?? undefined,
    sseKmsKeyId: q.get('sseKmsKeyId') ?? undefined,
    partSize: size('partSize', 8 * 1024 * 1024),
    queueSize,
  }
}

function statusOf(error: unknown): number | undefined {
  return (error as {$metadata?: {httpStatusCode?: number}})?.$metadata?.httpStatusCode
}

function mapError(error: unknown, action: string, key: string): BackendError {
  if (error instanceof BackendError) return error
  const name = (error as Error)?.name ?? ''
  const status = statusOf(error)
  const where = `${action} ${key}`
  const detail = `${name}${status ? ` (HTTP ${status})` : ''}: ${(error as Error)?.message ?? error}`
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return new BackendError('not-found', `${where}: no such object`, {subject: key, cause: error})
  if (name === 'NoSuchBucket') return new BackendError('not-found', `${where}: the bucket does not exist`, {subject: key, cause: error, suggestion: 'Create the bucket, or fix the bucket name in the repository URL.'})
  if (name === 'PreconditionFailed' || status === 412) return new BackendError('exists', `${where}: already exists`, {subject: key, cause: error})
  if (name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || status === 403 || status === 401) {
    return new BackendError('permission', `${where}: ${detail}`, {subject: key, cause: error, suggestion: 'Check the credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE) and the bucket policy; `engram-ops repo check` tests each permission.'})
  }
  if (name === 'AbortError') return error as BackendError
  return new BackendError('transient', `${where}: ${detail}`, {subject: key, cause: error, suggestion: 'The object store is unreachable or failing; check the endpoint and retry (the SDK already retried with backoff).'})
}

export class S3Backend implements RepositoryBackend {
  readonly url: string
  private readonly client: S3Client
  private readonly partSize: number
  private readonly queueSize: number

  constructor(readonly o: S3Options) {
    const q = [o.endpoint ? `endpoint=${o.endpoint}` : '', o.region ? `region=${o.region}` : ''].filter(Boolean).join('&')
    this.url = `s3://${o.bucket}/${o.prefix}${q ? `?${q}` : ''}`
    const config: S3ClientConfig = {
      region: o.region ?? process.env.AWS_REGION ?? 'us-east-1',
      forcePathStyle: o.forcePathStyle,
      maxAttempts: o.maxAttempts ?? 5,
      retryMode: 'standard',
      ...(o.endpoint ? {endpoint: o.endpoint} : {}),
      // An idle timeout: a stalled server fails the request (and the SDK retries), a slow transfer that
      // keeps moving does not. (`requestTimeout` only logs a warning in current SDKs.)
      requestHandler: {socketTimeout: o.requestTimeoutMs ?? 60_000, connectionTimeout: 10_000},
      // Checksums on every request are not supported by every S3-compatible server; we verify every object against the manifest's hash ourselves.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    }
    this.client = new S3Client(config)
    this.partSize = o.partSize ?? 8 * 1024 * 1024
    if (this.partSize < 5 * 1024 * 1024) throw new UsageError(`S3 part size ${this.partSize} is below the 5 MiB minimum`, {code: 'BAD_PART_SIZE', suggestion: 'Use --part-size 5MiB or more.'})
    this.queueSize = o.queueSize ?? 4
  }

  static fromUrl(url: string, overrides: Partial<S3Options> = {}): S3Backend {
    return new S3Backend({...parseS3Url(url), ...overrides})
  }

  private key(key: string): string {
    return this.o.prefix + key
  }

  private putExtras() {
    return {
      ...(this.o.storageClass ? {StorageClass: this.o.storageClass as StorageClass} : {}),
      ...(this.o.sse ? {ServerSideEncryption: this.o.sse as ServerSideEncryption} : {}),
      ...(this.o.sseKmsKeyId ? {SSEKMSKeyId: this.o.sseKmsKeyId} : {}),
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({Bucket: this.o.bucket, Key: this.key(key)}))
      return {key, size: r.ContentLength ?? 0, modified: r.LastModified}
    } catch (error) {
      const e = mapError(error, 'stat', key)
      if (e.kind === 'not-found' && (error as Error).name !== 'NoSuchBucket') return null
      throw e
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined
    do {
      let r
      try {
        r = await this.client.send(new ListObjectsV2Command({Bucket: this.o.bucket, Prefix: this.key(prefix), ContinuationToken: token, MaxKeys: 1000}))
      } catch (error) {
        throw mapError(error, 'list', prefix)
      }
      // S3 returns a page in UTF-8 byte order; some S3-compatible servers (s3rver) return it in their
      // directory-walk order ("a/1" before "a-z"). Sort the page so the contract's order holds there too.
      const page = (r.Contents ?? []).filter((c) => c.Key).sort((a, b) => Buffer.compare(Buffer.from(a.Key!), Buffer.from(b.Key!)))
      for (const c of page) {
        yield {key: c.Key!.slice(this.o.prefix.length), size: c.Size ?? 0, modified: c.LastModified}
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined
    } while (token)
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const {offset = 0, length} = options.range ?? {}
    const last = length === undefined ? '' : String(offset + length - 1)
    const open = async (from: number, ifMatch?: string) => {
      const range = options.range || from > offset ? `bytes=${from}-${last}` : undefined
      try {
        return await this.client.send(new GetObjectCommand({Bucket: this.o.bucket, Key: this.key(key), Range: range, IfMatch: ifMatch}), {abortSignal: options.signal})
      } catch (error) {
        if (ifMatch && statusOf(error) === 412) throw new BackendError('other', `read ${key}: the object was replaced while it was being read`, {subject: key, cause: error})
        throw mapError(error, 'read', key)
      }
    }
    const first = await open(offset)
    const end = first.ContentLength === undefined ? Infinity : offset + first.ContentLength
    // The SDK retries a request only until its response starts: a connection lost in the middle of
    // the body would fail the whole read (a restore of a large archive). Resume from the byte reached
    // with a ranged GET of the same object version (If-Match), a few times, with backoff.
    return Readable.from(
      (async function* (): AsyncGenerator<Buffer> {
        let body = first.Body as Readable
        let pos = offset
        for (let resumes = 1; ; resumes++) {
          let failure: unknown = null
          try {
            for await (const c of body) {
              pos += (c as Buffer).length
              yield c as Buffer
            }
          } catch (error) {
            failure = error
          } finally {
            body.destroy()
          }
          if (!failure && (pos >= end || end === Infinity)) return
          if (options.signal?.aborted) throw options.signal.reason ?? failure
          if (resumes > 3) {
            throw failure ? mapError(failure, 'read', key) : new BackendError('transient', `read ${key}: the connection ended at byte ${pos} of ${end}`, {subject: key})
          }
          await sleep(100 * 2 ** resumes)
          body = (await open(pos, first.ETag)).Body as Readable
        }
      })(),
    )
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<ObjectInfo> {
    try {
      // ifAbsent objects (lock leases, the repository config) are small: take a stream whole so the
      // conditional create below applies to it too, instead of silently replacing an existing object.
      if (options.ifAbsent && !Buffer.isBuffer(body)) body = await readAll(body)
      if (Buffer.isBuffer(body)) {
        if (options.ifAbsent) {
          // Conditional create where the server supports it (AWS S3, MinIO, recent Ceph). Servers
          // that ignore If-None-Match are caught by the HEAD before and the read-back after.
          if (await this.stat(key)) throw new BackendError('exists', `write ${key}: already exists`, {subject: key})
          await this.client.send(new PutObjectCommand({Bucket: this.o.bucket, Key: this.key(key), Body: body, IfNoneMatch: '*', ...this.putExtras()}), {abortSignal: options.signal})
          const back = await readAll(await this.get(key))
          if (!back.equals(body)) throw new BackendError('exists', `write ${key}: another writer created it at the same time`, {subject: key})
        } else {
          await this.client.send(new PutObjectCommand({Bucket: this.o.bucket, Key: this.key(key), Body: body, ContentLength: body.length, ...this.putExtras()}), {abortSignal: options.signal})
        }
        return {key, size: body.length}
      }
      let size = 0
      const counted = body.on('data', (c: Buffer) => (size += c.length))
      const upload = new Upload({
        client: this.client,
        params: {Bucket: this.o.bucket, Key: this.key(key), Body: counted, ...this.putExtras()},
        partSize: this.partSize,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      })
      const onAbort = () => void upload.abort()
      options.signal?.addEventListener('abort', onAbort, {once: true})
      try {
        await upload.done()
      } finally {
        options.signal?.removeEventListener('abort', onAbort)
      }
      return {key, size}
    } catch (error) {
      throw mapError(error, 'write', key)
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000)
      try {
        const r = await this.client.send(new DeleteObjectsCommand({Bucket: this.o.bucket, Delete: {Objects: batch.map((k) => ({Key: this.key(k)})), Quiet: true}}))
        const failed = (r.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey')
        if (failed.length > 0) throw new BackendError(failed[0].Code === 'AccessDenied' ? 'permission' : 'transient', `delete ${failed[0].Key}: ${failed[0].Code} ${failed[0].Message ?? ''}`, {subject: failed[0].Key})
      } catch (error) {
        throw mapError(error, 'delete', batch[0])
      }
    }
  }

  async serverTime(): Promise<Date | null> {
    let date: string | undefined
    const cmd = new ListObjectsV2Command({Bucket: this.o.bucket, Prefix: this.o.prefix, MaxKeys: 1})
    cmd.middlewareStack.add(
      (next) => async (args) => {
        const r = await next(args)
        date = (r.response as {headers?: Record<string, string>}).headers?.date
        return r
      },
      {step: 'deserialize', name: 'engramOpsCaptureDate'},
    )
    try {
      await this.client.send(cmd)
    } catch (error) {
      throw mapError(error, 'list', this.o.prefix)
    }
    return date ? new Date(date) : null
  }

  async close(): Promise<void> {
    this.client.destroy()
  }
}
