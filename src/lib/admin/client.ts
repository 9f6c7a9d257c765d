/**
 * A client for Engram's HTTP API (reference/engram-http-api.md), on undici.
 *
 * - Every attempt has a deadline (`timeoutMs`, connect + headers + body).
 * - Retries (`retries`, default 3) use exponential backoff with full jitter, on connection failures
 *   and on 503, honouring `Retry-After` (capped). A POST that is not idempotent is retried only when
 *   it cannot have reached the server (connection refused, DNS, connect timeout) or on a 503, which
 *   Engram returns before doing any work; never after a timeout or another response, because a
 *   remember that timed out may well have been stored.
 * - The space goes out as `X-Memory-Space` and `?space=` (routes differ in which one they read), plus
 *   `X-Memory-Space-Id` when a key is set, so Engram's auth layer enforces key scoping.
 * - Failures become AdminApiError: unreachable and 5xx exit 14, 401/403 exit 13, other 4xx exit 2.
 *   Messages name method, URL, status and Engram's error code and message (JSON envelope or axum's
 *   plain text), and never contain the API key.
 */
import {setTimeout as sleep} from 'node:timers/promises'

import {Agent, type Dispatcher, request} from 'undici'

import {AdminApiError, ExitCode, type ExitCodeValue, UsageError} from '../errors.js'
import {
  type ErrorEnvelope,
  type HealthSummary,
  type MemoryList,
  type MemoryRecord,
  type RememberEpisodeRequest,
  type RememberMemoryRequest,
  type RememberResponse,
  type ShutdownResponse,
  SPACE_HEADER,
  SPACE_SCOPE_HEADER,
  type SpaceDescriptor,
  type SystemHealth,
  type Tier,
} from './types.js'
import {redactUrl} from '../repo/url.js'

export interface AdminClientOptions {
  /** e.g. http://127.0.0.1:7432 (Engram's default port). */
  baseUrl: string
  /** `engram_key_<id>_<secret>`, sent as a bearer token. */
  apiKey?: string
  /** Per attempt. Default 10 s. */
  timeoutMs?: number
  /** Extra attempts after the first. Default 3. */
  retries?: number
  /** Default memory space for data-plane calls. */
  space?: string
  /** First backoff step; doubles per attempt, with full jitter. Default 200 ms. */
  backoffMs?: number
  /** Upper bound for one backoff step or a Retry-After wait. Default 30 s. */
  maxDelayMs?: number
  /** Cancels every request (e.g. on SIGINT). */
  signal?: AbortSignal
}

export interface ListMemoriesOptions {
  space?: string
  offset?: number
  limit?: number
  includeEmbeddings?: boolean
  tier?: Tier
}

interface Call {
  method: 'GET' | 'POST' | 'DELETE'
  path: string
  query?: Record<string, string | number | boolean | undefined>
  body?: unknown
  /** Memory space for X-Memory-Space / ?space= (data-plane routes only). */
  space?: string
  /** Safe to repeat after an uncertain failure. Default: GET and DELETE. */
  idempotent?: boolean
  /** Statuses that carry an answer rather than an error (health routes answer 503 when unhealthy). */
  accept?: number[]
}

interface Answer<T> {
  status: number
  body: T
}

/** Failures where the request never left this machine, so even a non-idempotent POST can be resent. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])

function errorCode(error: unknown): string | undefined {
  const e = error as {code?: string; cause?: {code?: string}; name?: string}
  if (e?.name === 'TimeoutError') return 'TIMEOUT'
  return e?.code ?? e?.cause?.code
}

/** Retry-After in ms: delta-seconds or an HTTP date; null when absent or unreadable. */
function retryAfterMs(value: string | string[] | undefined): number | null {
  const v = Array.isArray(value) ? value[0] : value
  if (v === undefined || v.trim() === '') return null
  if (/^\d+$/.test(v.trim())) return Number(v) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now())
}

function exitFor(status: number): ExitCodeValue {
  if (status === 401 || status === 403) return ExitCode.permission
  if (status >= 500 || status === 408 || status === 429) return ExitCode.unavailable
  return ExitCode.usage
}

function suggestionFor(status: number, apiCode: string | undefined): string {
  if (status === 401) return 'Check the API key: Engram expects `Authorization: Bearer engram_key_<key_id>_<secret>` on every route when auth is on.'
  if (status === 403) return 'The API key is not allowed to use this memory space; use a key scoped to it.'
  if (status === 404 && !apiCode) return 'The server has no such route: check that the URL points at an Engram server (default port 7432).'
  if (status === 404) return 'Check the id and the memory space.'
  if (status >= 500) return 'Check the server health (`/api/v1/system/health`) and its log, then retry.'
  return 'Fix the request as the message says and try again.'
}

export class AdminClient {
  readonly baseUrl: string
  readonly space?: string
  private readonly apiKey?: string
  private readonly timeoutMs: number
  private readonly retries: number
  private readonly backoffMs: number
  private readonly maxDelayMs: number
  private readonly signal?: AbortSignal
  private readonly dispatcher: Dispatcher

  constructor(o: AdminClientOptions) {
    let base: URL
    try {
      base = new URL(o.baseUrl)
    } catch {
      base = new URL('invalid:')
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new UsageError(`not an http(s) URL: ${JSON.stringify(redactUrl(o.baseUrl))}`, {
        code: 'BAD_URL',
        suggestion: 'Pass the server address like http://127.0.0.1:7432.',
      })
    }
    // Credentials in the URL would end up in messages; the key goes in a header instead.
    base.username = ''
    base.password = ''
    this.baseUrl = base.toString().replace(/\/+$/, '')
    this.apiKey = o.apiKey
    this.space = o.space
    this.timeoutMs = o.timeoutMs ?? 10_000
    this.retries = o.retries ?? 3
    this.backoffMs = o.backoffMs ?? 200
    this.maxDelayMs = o.maxDelayMs ?? 30_000
    this.signal = o.signal
    this.dispatcher = new Agent({connectTimeout: this.timeoutMs, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs})
  }

  /** Releases pooled connections. */
  async close(): Promise<void> {
    await this.dispatcher.close()
  }

  // ------------------------------------------------------------------ routes

  async health(): Promise<HealthSummary> {
    return (await this.call<HealthSummary>({method: 'GET', path: '/health', accept: [503]})).body
  }

  /** Liveness: resolves when the server answers 200 on /health/alive. */
  async alive(): Promise<void> {
    await this.call({method: 'GET', path: '/health/alive'})
  }

  /** Readiness and per-space memory counts; `space` only filters the answer (it never creates one). */
  async systemHealth(space?: string): Promise<SystemHealth> {
    return (await this.call<SystemHealth>({method: 'GET', path: '/api/v1/system/health', query: {space}, accept: [503]})).body
  }

  /** Spaces loaded by the server (Engram lists only the spaces touched since it started). */
  async listSpaces(): Promise<SpaceDescriptor[]> {
    return (await this.call<{spaces: SpaceDescriptor[]}>({method: 'GET', path: '/api/v1/spaces'})).body.spaces
  }

  /** Create-or-get (Engram answers 201 either way), so it is safe to retry. */
  async createSpace(id: string): Promise<SpaceDescriptor> {
    return (await this.call<SpaceDescriptor>({method: 'POST', path: '/api/v1/spaces', body: {id}, idempotent: true})).body
  }

  async remember(body: RememberMemoryRequest, space?: string): Promise<RememberResponse> {
    return (await this.call<RememberResponse>({method: 'POST', path: '/api/v1/memories/remember', body, space: space ?? this.space})).body
  }

  async rememberEpisode(body: RememberEpisodeRequest, space?: string): Promise<RememberResponse> {
    return (await this.call<RememberResponse>({method: 'POST', path: '/api/v1/episodes/remember', body, space: space ?? this.space})).body
  }

  async listMemories(o: ListMemoriesOptions = {}): Promise<MemoryList> {
    const query = {tier: o.tier, offset: o.offset, limit: o.limit, include_embeddings: o.includeEmbeddings}
    return (await this.call<MemoryList>({method: 'GET', path: '/api/v1/memories', query, space: o.space ?? this.space})).body
  }

  /** Throws AdminApiError (status 404, apiCode MEMORY_NOT_FOUND) when the id is not in the space. */
  async getMemory(id: string, space?: string): Promise<MemoryRecord> {
    return (await this.call<MemoryRecord>({method: 'GET', path: `/api/v1/memories/${encodeURIComponent(id)}`, space: space ?? this.space})).body
  }

  /** Prometheus text exposition. */
  async metrics(): Promise<string> {
    return (await this.call<string>({method: 'GET', path: '/metrics/prometheus'})).body
  }

  /** Asks the server to shut down gracefully (it answers before it stops). */
  async shutdown(): Promise<ShutdownResponse> {
    return (await this.call<ShutdownResponse>({method: 'POST', path: '/shutdown'})).body
  }

  // ------------------------------------------------------------------ transport

  private url(c: Call): URL {
    const url = new URL(this.baseUrl + c.path)
    for (const [k, v] of Object.entries(c.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
    if (c.space !== undefined) url.searchParams.set('space', c.space)
    return url
  }

  private headers(c: Call): Record<string, string> {
    const h: Record<string, string> = {accept: 'application/json', 'user-agent': 'engram-ops'}
    if (c.body !== undefined) h['content-type'] = 'application/json'
    if (this.apiKey) h.authorization = `Bearer ${this.apiKey}`
    if (c.space !== undefined) {
      h[SPACE_HEADER.toLowerCase()] = c.space
      if (this.apiKey) h[SPACE_SCOPE_HEADER.toLowerCase()] = c.space
    }
    return h
  }

  private backoff(attempt: number): number {
    return Math.random() * Math.min(this.maxDelayMs, this.backoffMs * 2 ** attempt)
  }

  private redact(text: string): string {
    return this.apiKey ? text.replaceAll(this.apiKey, '[redacted]') : text
  }

  private async call<T>(c: Call): Promise<Answer<T>> {
    const url = this.url(c)
    const idempotent = c.idempotent ?? c.method !== 'POST'
    const body = c.body === undefined ? undefined : JSON.stringify(c.body)
    const where = `${c.method} ${url}`
    for (let attempt = 0; ; attempt++) {
      const canRetry = attempt < this.retries
      let status: number
      let text: string
      let contentType: string
      let retryAfter: string | string[] | undefined
      try {
        const deadline = AbortSignal.timeout(this.timeoutMs)
        const res = await request(url, {
          method: c.method,
          headers: this.headers(c),
          body,
          dispatcher: this.dispatcher,
          signal: this.signal ? AbortSignal.any([this.signal, deadline]) : deadline,
        })
        status = res.statusCode
        contentType = String(res.headers['content-type'] ?? '')
        retryAfter = res.headers['retry-after']
        text = await res.body.text()
      } catch (error) {
        if (this.signal?.aborted) throw error
        const code = errorCode(error) ?? 'NETWORK_ERROR'
        if (canRetry && (idempotent || NOT_SENT.has(code))) {
          await sleep(this.backoff(attempt), undefined, {signal: this.signal})
          continue
        }
        throw this.unreachable(where, code, error, attempt + 1)
      }
      const parsed = contentType.includes('json') ? this.parseJson(text) : text
      if (status < 400) return {status, body: parsed as T}
      // An unhealthy server answers its health routes with 503 and a health body: that is the answer.
      if (c.accept?.includes(status) && typeof (parsed as {status?: unknown} | null)?.status === 'string') return {status, body: parsed as T}
      if (status === 503 && canRetry) {
        // Engram sends 503 before doing any work, so even a remember can be resent.
        const wait = retryAfterMs(retryAfter) ?? this.backoff(attempt)
        await sleep(Math.min(wait, this.maxDelayMs), undefined, {signal: this.signal})
        continue
      }
      throw this.httpError(where, status, parsed, text, attempt + 1)
    }
  }

  private parseJson(text: string): unknown {
    if (text === '') return text
    try {
      return JSON.parse(text)
    } catch {
      return text
    }
  }

  private unreachable(where: string, code: string, cause: unknown, attempts: number): AdminApiError {
    const what = code === 'TIMEOUT' || code.endsWith('_TIMEOUT') ? `no answer within ${this.timeoutMs} ms` : `cannot reach the server (${code})`
    return new AdminApiError(this.redact(`${where} failed: ${what}${attempts > 1 ? ` after ${attempts} attempts` : ''}`), {
      code: code === 'TIMEOUT' || code.endsWith('_TIMEOUT') ? 'ENGRAM_TIMEOUT' : 'ENGRAM_UNREACHABLE',
      exit: ExitCode.unavailable,
      subject: this.baseUrl,
      suggestion: 'Check that Engram is running and the URL (host and port: the PID file records the real port), or raise the timeout.',
      cause,
    })
  }

  private httpError(where: string, status: number, parsed: unknown, text: string, attempts: number): AdminApiError {
    const env = (parsed as ErrorEnvelope | undefined)?.error
    const apiCode = typeof env?.code === 'string' ? env.code : undefined
    const detail = apiCode ? `${apiCode}: ${env!.message}` : text.trim() === '' ? 'empty body' : text.trim().slice(0, 300)
    const retried = attempts > 1 ? ` (after ${attempts} attempts)` : ''
    return new AdminApiError(this.redact(`${where} failed: HTTP ${status} ${detail}${retried}`), {
      code: status === 401 || status === 403 ? 'ENGRAM_AUTH' : status >= 500 ? 'ENGRAM_SERVER_ERROR' : 'ENGRAM_REQUEST_REJECTED',
      exit: exitFor(status),
      subject: where.slice(where.indexOf(' ') + 1),
      suggestion: suggestionFor(status, apiCode),
      status,
      apiCode,
      details: {status, apiCode, body: this.redact(text.slice(0, 1000))},
    })
  }
}
