/**
 * S3 for tests, with no external service:
 *
 *  - `startS3rver()` runs s3rver (a devDependency) in-process on a free loopback port, storing into a
 *    fresh temp directory with one bucket, and gives back `url(prefix)` repository URLs for it.
 *    s3rver 3.7 lacks two multipart calls the tests need; they are added as a first middleware:
 *    AbortMultipartUpload (DELETE ?uploadId=, which s3rver answers 405) and ListMultipartUploads
 *    (GET /bucket?uploads, which s3rver answers 501). `openUploads()` reads the same from disk.
 *
 *  - `startFaultProxy()` is an HTTP proxy on loopback in front of it (node:http + node:net only)
 *    that decides, per request, to pass it through, answer 500 InternalError, answer 503 SlowDown,
 *    reset the connection (mid-request or mid-response) or stall (never answer), and counts the
 *    requests per S3 operation and the faults it injected.
 *
 * Tests that run the CLI against either MUST spawn it asynchronously (spawn/execFile): s3rver runs on
 * the test's own event loop, so spawnSync would deadlock.
 */
import {mkdtemp, readdir, readFile, rm, stat} from 'node:fs/promises'
import {createServer, request as httpRequest, type IncomingMessage, type ServerResponse} from 'node:http'
import type {Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

// @ts-ignore -- s3rver ships no type declarations (it is used only as below)
import S3rver from 's3rver'

import {type CliOptions, type CliRun, runCli as runBuiltCli} from './cli.js'

export type {CliRun}


/** Credentials s3rver accepts; the AWS SDK's default provider chain reads them from the environment. */
export const S3_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
} as const

/** Makes in-process S3 clients of this test file use the s3rver credentials. */
export function useS3Credentials(): void {
  Object.assign(process.env, S3_ENV)
  delete process.env.AWS_PROFILE
  delete process.env.AWS_SESSION_TOKEN
}

/** The CLI with the s3rver credentials in its environment (see test/support/cli.ts). */
export function runCli(args: string[], o: CliOptions = {}): Promise<CliRun> {
  return runBuiltCli(args, {...o, env: {...S3_ENV, ...o.env}})
}

export {unwrap} from './cli.js'

export interface UrlOptions {
  partSize?: string
  queueSize?: number
}

function repoUrl(bucket: string, prefix: string, endpoint: string, o: UrlOptions = {}): string {
  const q = new URLSearchParams({endpoint, region: 'us-east-1', forcePathStyle: 'true'})
  if (o.partSize) q.set('partSize', o.partSize)
  if (o.queueSize !== undefined) q.set('queueSize', String(o.queueSize))
  return `s3://${bucket}/${prefix.replace(/^\/+/, '')}?${q.toString().replace(/%3A/g, ':').replace(/%2F/g, '/')}`
}

export interface OpenUpload {
  uploadId: string
  key: string
  parts: number
}

export interface S3rverHandle {
  bucket: string
  /** s3rver's storage directory. */
  directory: string
  port: number
  /** http://127.0.0.1:PORT */
  endpoint: string
  /** A repository URL for `prefix` in the bucket. */
  url(prefix: string, o?: UrlOptions): string
  /** Requests s3rver received, per S3 operation, and in order (kind and object key). */
  readonly requests: Partial<Record<S3Kind, number>>
  readonly log: Array<{kind: S3Kind; key: string}>
  resetCounts(): void
  /** Multipart uploads initiated and neither completed nor aborted, read from s3rver's directory. */
  openUploads(): Promise<OpenUpload[]>
  close(): Promise<void>
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

export async function startS3rver(o: {bucket?: string} = {}): Promise<S3rverHandle> {
  useS3Credentials()
  const bucket = o.bucket ?? 'bk'
  const directory = await mkdtemp(join(tmpdir(), 'engram-s3rver-'))
  const server = new S3rver({port: 0, address: '127.0.0.1', silent: true, directory, configureBuckets: [{name: bucket, configs: []}]})
  // s3rver keeps a multipart upload in <directory>/<bucket>/._S3rver_uploads/<uploadId>/{key,metadata,<part>…}.
  const uploadsDir = (b: string) => join(directory, b, '._S3rver_uploads')
  const openUploads = async (b = bucket): Promise<OpenUpload[]> => {
    let ids: string[]
    try {
      ids = await readdir(uploadsDir(b))
    } catch {
      return []
    }
    const out: OpenUpload[] = []
    for (const uploadId of ids.sort()) {
      const files = await readdir(join(uploadsDir(b), uploadId)).catch(() => [] as string[])
      const key = await readFile(join(uploadsDir(b), uploadId, 'key'), 'utf8').catch(() => '?')
      out.push({uploadId, key, parts: files.filter((f) => /^\d+$/.test(f)).length})
    }
    return out
  }
  type Ctx = {method: string; path: string; querystring: string; query: Record<string, string>; status: number; body: unknown; type: string}
  let requests: Partial<Record<S3Kind, number>> = {}
  let log: Array<{kind: S3Kind; key: string}> = []
  ;(server as unknown as {middleware: Array<(ctx: Ctx, next: () => Promise<void>) => Promise<void>>}).middleware.unshift(async (ctx, next) => {
    const [, b, ...rest] = ctx.path.split('/')
    const key = decodeURIComponent(rest.join('/'))
    const kind = classify(ctx.method, key, new URLSearchParams(ctx.querystring))
    requests[kind] = (requests[kind] ?? 0) + 1
    log.push({kind, key})
    if (ctx.method === 'DELETE' && key && typeof ctx.query.uploadId === 'string') {
      const dir = join(uploadsDir(b), ctx.query.uploadId)
      if (!(await stat(dir).catch(() => null))) {
        ctx.status = 404
        ctx.type = 'application/xml'
        ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message><UploadId>${xml(ctx.query.uploadId)}</UploadId></Error>`
        return
      }
      await rm(dir, {recursive: true, force: true})
      ctx.status = 204
      ctx.body = ''
      return
    }
    if (ctx.method === 'GET' && b && !key && 'uploads' in ctx.query) {
      const prefix = ctx.query.prefix ?? ''
      const uploads = (await openUploads(b)).filter((u) => u.key.startsWith(prefix))
      ctx.status = 200
      ctx.type = 'application/xml'
      ctx.body = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        `<Bucket>${xml(b)}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>${xml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>`,
        ...uploads.map((u) => `<Upload><Key>${xml(u.key)}</Key><UploadId>${u.uploadId}</UploadId><StorageClass>STANDARD</StorageClass><Initiated>${new Date().toISOString()}</Initiated></Upload>`),
        '</ListMultipartUploadsResult>',
      ].join('')
      return
    }
    await next()
  })
  const {port} = (await server.run()) as {port: number}
  const endpoint = `http://127.0.0.1:${port}`
  return {
    bucket,
    directory,
    port,
    endpoint,
    url: (prefix, uo) => repoUrl(bucket, prefix, endpoint, uo),
    openUploads: () => openUploads(),
    get requests() {
      return requests
    },
    get log() {
      return log
    },
    resetCounts() {
      requests = {}
      log = []
    },
    async close() {
      await server.close()
      await rm(directory, {recursive: true, force: true})
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Fault-injecting proxy
// ---------------------------------------------------------------------------------------------

export type S3Kind =
  | 'ListBuckets'
  | 'ListObjectsV2'
  | 'ListMultipartUploads'
  | 'DeleteObjects'
  | 'HeadObject'
  | 'GetObject'
  | 'PutObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'DeleteObject'
  | 'Other'

export type Fault =
  | 'pass'
  /** 500 InternalError with an S3 XML body. */
  | 'error500'
  /** 503 SlowDown with an S3 XML body. */
  | 'slowdown503'
  /** Reads part of the request (body), then destroys the connection without answering. */
  | 'reset-request'
  /** Forwards the request, sends the response head and part of its body, then destroys the connection. */
  | 'reset-response'
  /** Reads the request and never answers (until the client gives up or the proxy closes). */
  | 'stall'

export interface ProxiedRequest {
  /** 1-based number of this request through the proxy. */
  n: number
  /** 1-based number of this request among those of its kind. */
  nOfKind: number
  method: string
  /** The raw path with query, as the client sent it. */
  path: string
  bucket: string
  /** The object key (decoded), '' for bucket-level requests. */
  key: string
  query: URLSearchParams
  kind: S3Kind
}

export type FaultDecider = (r: ProxiedRequest) => Fault

export interface FaultProxy {
  port: number
  endpoint: string
  url(prefix: string, o?: UrlOptions): string
  /** Replaces the decider (default: pass everything). */
  setFault(decide: FaultDecider): void
  /** Requests seen per kind. */
  readonly requests: Partial<Record<S3Kind, number>>
  /** Faults injected per fault type (pass not counted). */
  readonly faults: Partial<Record<Exclude<Fault, 'pass'>, number>>
  /** Every request in order, with the fault applied. */
  readonly log: Array<{n: number; kind: S3Kind; method: string; key: string; fault: Fault}>
  /** Faults injected on requests of `kind` (optionally only of one fault type). */
  faultsOn(kind: S3Kind, fault?: Exclude<Fault, 'pass'>): number
  /** Clears the counters and log. */
  resetCounts(): void
  close(): Promise<void>
}

export function classify(method: string, key: string, q: URLSearchParams): S3Kind {
  if (!key) {
    if (method === 'GET' && q.has('uploads')) return 'ListMultipartUploads'
    if (method === 'GET' && q.get('list-type') === '2') return 'ListObjectsV2'
    if (method === 'POST' && q.has('delete')) return 'DeleteObjects'
    return 'Other'
  }
  switch (method) {
    case 'HEAD':
      return 'HeadObject'
    case 'GET':
      return 'GetObject'
    case 'PUT':
      return q.has('uploadId') && q.has('partNumber') ? 'UploadPart' : 'PutObject'
    case 'POST':
      return q.has('uploads') ? 'CreateMultipartUpload' : q.has('uploadId') ? 'CompleteMultipartUpload' : 'Other'
    case 'DELETE':
      return q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject'
    default:
      return 'Other'
  }
}

function s3ErrorBody(code: string, message: string, key: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xml(message)}</Message><Resource>/${xml(key)}</Resource><RequestId>FAULTPROXY</RequestId></Error>`
}

/**
 * An HTTP proxy on 127.0.0.1 in front of `upstream` (an S3 endpoint, e.g. a started s3rver) that
 * injects the fault `decide` picks for each request.
 */
export async function startFaultProxy(upstream: {endpoint: string; bucket: string}, decide: FaultDecider = () => 'pass'): Promise<FaultProxy> {
  const up = new URL(upstream.endpoint)
  let decider = decide
  let n = 0
  let requests: Partial<Record<S3Kind, number>> = {}
  let faults: FaultProxy['faults'] = {}
  let log: FaultProxy['log'] = []
  let byKindFault = new Map<string, number>()
  const sockets = new Set<Socket>()

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://proxy')
    const [, bucket = '', ...rest] = u.pathname.split('/')
    const key = decodeURIComponent(rest.join('/'))
    const method = req.method ?? 'GET'
    const kind = classify(method, key, u.searchParams)
    requests[kind] = (requests[kind] ?? 0) + 1
    const info: ProxiedRequest = {n: ++n, nOfKind: requests[kind]!, method, path: req.url ?? '/', bucket, key, query: u.searchParams, kind}
    let fault: Fault
    try {
      fault = decider(info)
    } catch {
      fault = 'pass'
    }
    log.push({n: info.n, kind, method, key, fault})
    if (fault !== 'pass') {
      faults[fault] = (faults[fault] ?? 0) + 1
      byKindFault.set(`${kind}:${fault}`, (byKindFault.get(`${kind}:${fault}`) ?? 0) + 1)
      byKindFault.set(`${kind}:*`, (byKindFault.get(`${kind}:*`) ?? 0) + 1)
    }
    const answer = (status: number, code: string, message: string) => {
      // Drain the request body first, as a real server would (the client may still be sending it).
      req.resume()
      req.on('end', () => {
        const body = s3ErrorBody(code, message, key)
        res.writeHead(status, {'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), 'x-amz-request-id': 'FAULTPROXY'})
        res.end(body)
      })
    }
    switch (fault) {
      case 'error500':
        return answer(500, 'InternalError', 'We encountered an internal error. Please try again.')
      case 'slowdown503':
        return answer(503, 'SlowDown', 'Please reduce your request rate.')
      case 'stall':
        req.resume() // read everything, answer nothing
        return
      case 'reset-request': {
        // Take some of the request body (if any), then drop the connection.
        let got = 0
        const cut = () => req.socket.destroy()
        req.on('data', (c: Buffer) => {
          got += c.length
          if (got >= 16 * 1024) cut()
        })
        req.on('end', cut)
        setTimeout(cut, 20)
        return
      }
      default:
        break
    }
    const headers = {...req.headers}
    const proxied = httpRequest({host: up.hostname, port: up.port, method, path: req.url, headers}, (upRes) => {
      if (fault === 'reset-response') {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        res.flushHeaders()
        let sent = 0
        const limit = Math.max(0, Math.min(64 * 1024, Math.floor(Number(upRes.headers['content-length'] ?? 0) / 2)))
        const cut = () => {
          upRes.destroy()
          res.socket?.destroy()
        }
        if (limit === 0) return void setTimeout(cut, 5)
        upRes.on('data', (c: Buffer) => {
          if (sent >= limit) return
          const part = c.subarray(0, limit - sent)
          sent += part.length
          res.write(part)
          if (sent >= limit) setTimeout(cut, 5)
        })
        upRes.on('end', cut)
        return
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
      upRes.pipe(res)
    })
    proxied.on('error', () => res.socket?.destroy())
    res.on('close', () => {
      if (!res.writableFinished) proxied.destroy()
    })
    req.pipe(proxied)
  }

  const server = createServer(handle)
  server.keepAliveTimeout = 5000
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.on('clientError', (_e, s) => s.destroy())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as {port: number}).port
  const endpoint = `http://127.0.0.1:${port}`
  return {
    port,
    endpoint,
    url: (prefix, o) => repoUrl(upstream.bucket, prefix, endpoint, o),
    setFault(d) {
      decider = d
    },
    get requests() {
      return requests
    },
    get faults() {
      return faults
    },
    get log() {
      return log
    },
    faultsOn(kind, fault) {
      return byKindFault.get(`${kind}:${fault ?? '*'}`) ?? 0
    },
    resetCounts() {
      n = 0
      requests = {}
      faults = {}
      log = []
      byKindFault = new Map()
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
