/**
 * An Engram-compatible HTTP server over an EngineStore, on node:http only. It answers the operational
 * subset of Engram's API (reference/engram-http-api.md) with Engram's status codes, bodies and quirks,
 * so the admin client and every remote feature of the toolkit can be tested against a real server.
 *
 * Cross-cutting behaviour, as Engram's main.rs layers it: security headers on every response,
 * permissive CORS, and, when API keys are configured, a bearer key on EVERY route (Engram's auth layer
 * wraps the whole router, "public" routes included).
 *
 * Routes Engram has but this engine cannot serve (recall, search, consolidations, query, ...) answer
 * 501 NOT_IMPLEMENTED rather than a misleading 404; cluster routes answer 501 FEATURE_NOT_ENABLED
 * "Cluster mode disabled", exactly as a single-node Engram does.
 */
import {createHash, timingSafeEqual} from 'node:crypto'
import {readFile, unlink, writeFile} from 'node:fs/promises'
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

import {API_KEY_PATTERN} from '../admin/types.js'
import type {EngineStore} from '../engine/store.js'
import {ExitCode, fsError, LockedError, OpsError, UsageError} from '../errors.js'
import {ApiError, featureNotEnabled, notImplemented, PlainError, systemError, unauthorized, unavailable} from './errors.js'
import {ServerMetrics} from './metrics.js'
import {DEFAULT_MAX_BODY_BYTES, header, Query} from './request.js'
import {decodeParam, EngramApi, type Reply, type RequestContext} from './routes.js'

export interface EngramServerOptions {
  store: EngineStore
  /** Default 127.0.0.1 (Engram's default http_bind). */
  host?: string
  /** Default 7432; 0 picks a free port. */
  port?: number
  /** Full `engram_key_<id>_<secret>` strings; when given (and non-empty) every route needs one. */
  apiKeys?: Iterable<string>
  /** Written as `<pid>:<port>` (Engram's format) once listening, removed on close. */
  pidFile?: string
  /** Request bodies above this are refused with 413. Default 2 MiB (axum's default limit). */
  maxBodyBytes?: number
  /** How long in-flight requests get to finish on close before their connections are cut. Default 3 s, as Engram. */
  shutdownGraceMs?: number
  /** Called with unexpected errors answered as 500, for logging. */
  onError?: (error: unknown) => void
}

export interface EngramServer {
  url: string
  host: string
  port: number
  /** Stops accepting, lets in-flight requests finish, closes the store (flushing the WAL), removes the PID file. Idempotent. */
  close(): Promise<void>
  /** Settles when the server has closed, whether through close() or POST /shutdown. */
  closed: Promise<void>
}

type Handler = (ctx: RequestContext) => Promise<Reply> | Reply

interface Route {
  path: string
  /** For paths with a `{id}` segment. */
  pattern?: RegExp
  methods: Record<string, Handler>
}

const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'x-xss-protection': '1; mode=block',
}

const digest = (key: string) => createHash('sha256').update(key).digest()

function replyFor(error: unknown, onError?: (e: unknown) => void): Reply {
  if (error instanceof PlainError) {
    // A refused body may still be arriving: do not reuse the connection.
    return {status: error.status, text: error.message, headers: error.status === 413 ? {connection: 'close'} : undefined}
  }
  const e = error instanceof ApiError ? error : systemError(error instanceof Error ? error.message : String(error))
  if (!(error instanceof ApiError)) onError?.(error)
  return {status: e.status, json: e.envelope(), headers: e.retryAfter === undefined ? undefined : {'retry-after': String(e.retryAfter)}}
}

function send(res: ServerResponse, reply: Reply): void {
  for (const [k, v] of Object.entries(reply.headers ?? {})) res.setHeader(k, v)
  let body: string | undefined
  if (reply.json !== undefined) {
    body = JSON.stringify(reply.json)
    res.setHeader('content-type', 'application/json')
  } else if (reply.text !== undefined) {
    body = reply.text
    res.setHeader('content-type', reply.contentType ?? 'text/plain; charset=utf-8')
  }
  res.setHeader('content-length', body === undefined ? 0 : Buffer.byteLength(body))
  res.writeHead(reply.status)
  res.end(body)
}

export async function createEngramServer(o: EngramServerOptions): Promise<EngramServer> {
  const host = o.host ?? '127.0.0.1'
  const keys = [...(o.apiKeys ?? [])]
  keys.forEach((k, i) => {
    // Never echo the key itself: it may be a real secret with a typo.
    if (!API_KEY_PATTERN.test(k)) {
      throw new UsageError(`API key #${i + 1} is not of the form engram_key_<24 alphanumerics>_<32 alphanumerics>`, {
        code: 'BAD_API_KEY',
        suggestion: 'Pass the full key Engram issued, e.g. engram_key_<key_id>_<secret>.',
      })
    }
  })
  const keyDigests = keys.map(digest)
  const metrics = new ServerMetrics()
  let shuttingDown = false
  let closing: Promise<void> | null = null
  let resolveClosed!: () => void
  let rejectClosed!: (e: unknown) => void
  const closed = new Promise<void>((resolve, reject) => {
    resolveClosed = resolve
    rejectClosed = reject
  })
  closed.catch(() => {}) // observed through close(); avoid an unhandled rejection when nobody awaits `closed`

  const api = new EngramApi(o.store, metrics, o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, () => void close().catch(() => {}))
  const notHere = (what: string) => () => {
    throw notImplemented(`${what} is not implemented by engram-ops engine serve`)
  }
  const noCluster = () => {
    throw featureNotEnabled('Cluster mode disabled')
  }
  const routes: Route[] = [
    {path: '/health', methods: {GET: () => api.health()}},
    {path: '/health/alive', methods: {GET: () => api.alive()}},
    {path: '/health/spreading', methods: {GET: () => api.spreadingHealth()}},
    {path: '/api/v1/system/health', methods: {GET: (c) => api.systemHealth(c)}},
    {path: '/metrics/prometheus', methods: {GET: () => api.prometheus()}},
    {path: '/api/v1/spaces', methods: {GET: () => api.listSpaces(), POST: (c) => api.createSpace(c)}},
    {path: '/api/v1/memories', methods: {GET: (c) => api.listMemories(c), POST: (c) => api.createMemory(c)}},
    {path: '/api/v1/memories/remember', methods: {POST: (c) => api.rememberMemory(c)}},
    {path: '/api/v1/episodes/remember', methods: {POST: (c) => api.rememberEpisode(c)}},
    {path: '/shutdown', methods: {POST: () => api.shutdown()}},
    // Engram routes this engine does not provide.
    {path: '/metrics', methods: {GET: notHere('The JSON metrics snapshot')}},
    {path: '/api/v1/memories/search', methods: {GET: notHere('Memory search')}},
    {path: '/api/v1/memories/recall', methods: {GET: notHere('Recall')}},
    {path: '/api/v1/memories/recognize', methods: {POST: notHere('Recognition')}},
    {path: '/api/v1/episodes/replay', methods: {GET: notHere('Episode replay')}},
    {path: '/api/v1/consolidations', methods: {GET: notHere('Consolidation')}},
    {path: '/api/v1/consolidations/{id}', pattern: /^\/api\/v1\/consolidations\/([^/]+)$/, methods: {GET: notHere('Consolidation')}},
    {path: '/api/v1/query/probabilistic', methods: {GET: notHere('Probabilistic query')}},
    {path: '/api/v1/query', methods: {POST: notHere('The query language')}},
    {path: '/api/v1/complete', methods: {POST: notHere('Pattern completion')}},
    {path: '/api/v1/maintenance/compact', methods: {POST: notHere('Compaction')}},
    {path: '/api/v1/system/introspect', methods: {GET: notHere('Introspection')}},
    {path: '/api/v1/system/spreading/config', methods: {GET: notHere('Spreading auto-tuning')}},
    {path: '/cluster/health', methods: {GET: noCluster}},
    {path: '/cluster/nodes', methods: {GET: noCluster}},
    {path: '/cluster/migrate', methods: {POST: noCluster}},
    {path: '/cluster/rebalance', methods: {GET: noCluster, POST: noCluster}},
    // Parameterised last: static segments win, as in axum.
    {
      path: '/api/v1/memories/{id}',
      pattern: /^\/api\/v1\/memories\/([^/]+)$/,
      methods: {GET: (c) => api.getMemory(c), DELETE: (c) => api.deleteMemory(c)},
    },
  ]
  const exact = new Map(routes.filter((r) => !r.pattern).map((r) => [r.path, r]))

  function match(pathname: string): {route: Route; params: Record<string, string>} | null {
    const r = exact.get(pathname)
    if (r) return {route: r, params: {}}
    for (const route of routes) {
      const m = route.pattern?.exec(pathname)
      if (m) return {route, params: {id: decodeParam(m[1])}}
    }
    return null
  }

  function authenticate(req: IncomingMessage): void {
    if (keyDigests.length === 0) return
    const value = header(req, 'authorization')
    if (value === undefined) throw unauthorized('Missing Authorization header')
    const token = /^Bearer\s+(\S+)\s*$/i.exec(value)?.[1]
    let ok = false
    if (token && API_KEY_PATTERN.test(token)) {
      const d = digest(token)
      for (const k of keyDigests) ok = timingSafeEqual(d, k) || ok // compare against every key: no early exit
    }
    if (!ok) throw unauthorized('Invalid API key format or value')
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v)
    // Engram's CorsLayer allows any origin, method and header, and answers preflights before auth.
    if (req.headers.origin) res.setHeader('access-control-allow-origin', '*')
    const method = req.method ?? 'GET'
    let route = 'unmatched'
    let reply: Reply
    try {
      if (method === 'OPTIONS' && req.headers.origin && req.headers['access-control-request-method']) {
        reply = {status: 200, headers: {'access-control-allow-methods': '*', 'access-control-allow-headers': '*'}}
      } else {
        authenticate(req)
        if (shuttingDown) throw unavailable('The server is shutting down', 5)
        const url = new URL(req.url ?? '/', 'http://localhost')
        const m = match(url.pathname)
        if (!m) {
          reply = {status: 404}
        } else {
          route = m.route.path
          // Like axum's get(), GET routes answer HEAD too (Node drops the body).
          const h = m.route.methods[method === 'HEAD' ? 'GET' : method]
          reply = h
            ? await h({req, url, query: new Query(url.searchParams), params: m.params})
            : {status: 405, headers: {allow: Object.keys(m.route.methods).join(',')}}
        }
      }
    } catch (error) {
      reply = replyFor(error, o.onError)
    }
    if (shuttingDown) reply.headers = {...reply.headers, connection: 'close'}
    metrics.count(method, route, reply.status)
    if (reply.after) res.once('finish', reply.after)
    send(res, reply)
  }

  /** Handlers still running; close() waits for them even after their connections were cut. */
  const inflight = new Set<Promise<void>>()
  const server = createServer((req, res) => {
    const p = handle(req, res)
      .catch((error) => {
        o.onError?.(error)
        if (!res.headersSent) send(res, replyFor(error))
        else res.destroy()
      })
      .finally(() => inflight.delete(p))
    inflight.add(p)
  })

  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen({host, port: o.port ?? 7432}, () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EADDRINUSE') {
      throw new LockedError(`port ${o.port} on ${host} is already in use`, {
        code: 'PORT_IN_USE',
        subject: `${host}:${o.port}`,
        suggestion: 'Stop the process holding the port, pick another --port, or use --port 0 for a free one.',
        cause: error,
      })
    }
    throw new OpsError(`cannot listen on ${host}:${o.port}: ${error.message}`, {
      code: 'LISTEN_FAILED',
      exit: error.code === 'EACCES' ? ExitCode.permission : ExitCode.unavailable,
      subject: `${host}:${o.port}`,
      suggestion: 'Check the --host address and that the port is allowed for this user (ports below 1024 need privileges).',
      cause: error,
    })
  })

  const pidLine = `${process.pid}:${port}`
  if (o.pidFile) {
    try {
      await writeFile(o.pidFile, pidLine)
    } catch (error) {
      server.close()
      throw fsError(error, 'write PID file', o.pidFile)
    }
  }

  async function removePidFile(): Promise<void> {
    if (!o.pidFile) return
    // Only our own line: another server may have taken over the path since.
    const held = await readFile(o.pidFile, 'utf8').catch(() => null)
    if (held?.trim() === pidLine) await unlink(o.pidFile).catch(() => {})
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      shuttingDown = true
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections()
      const force = setTimeout(() => server.closeAllConnections(), o.shutdownGraceMs ?? 3000)
      await stopped
      clearTimeout(force)
      // A handler whose connection was cut at the grace deadline may still be writing: the store
      // must not close under it (a write after close would open a new WAL writer nobody closes).
      await Promise.allSettled([...inflight])
      await o.store.close()
      await removePidFile()
    })().then(resolveClosed, (error) => {
      rejectClosed(error)
      throw error
    })
    return closing
  }

  const urlHost = host.includes(':') ? `[${host}]` : host
  return {url: `http://${urlHost}:${port}`, host, port, close, closed}
}
