/**
 * AdminClient against real HTTP servers on 127.0.0.1: `engine serve` for the API itself, and tiny
 * node:http servers for the transport behaviour (what is sent, retries, timeouts, error mapping).
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {AdminClient, type AdminClientOptions} from '../../src/lib/admin/client.js'
import {EngineStore} from '../../src/lib/engine/store.js'
import {AdminApiError} from '../../src/lib/errors.js'
import {createEngramServer, type EngramServer} from '../../src/lib/server/server.js'

const KEY = `engram_key_${'k'.repeat(24)}_${'S'.repeat(32)}`

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

function client(o: AdminClientOptions): AdminClient {
  const c = new AdminClient({backoffMs: 5, ...o})
  cleanups.push(() => c.close())
  return c
}

async function engram(apiKeys?: string[]): Promise<EngramServer> {
  const dir = await mkdtemp(join(tmpdir(), 'engram-client-test-'))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  const store = await EngineStore.open(dir)
  const server = await createEngramServer({store, port: 0, apiKeys})
  cleanups.push(() => server.close())
  return server
}

interface Seen {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: string
}

/** A loopback server whose answers the test scripts; records every request. */
async function scripted(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<{url: string; seen: Seen[]}> {
  const seen: Seen[] = []
  const server: Server = createServer(async (req, res) => {
    let body = ''
    for await (const chunk of req) body += chunk
    seen.push({method: req.method!, url: req.url!, headers: req.headers, body})
    handler(req, res, seen.length)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return {url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen}
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, {'content-type': 'application/json', ...headers})
  res.end(JSON.stringify(body))
}

const envelope = (code: string, message: string) => ({
  error: {code, message, educational_context: 'ctx', cognitive_guidance: 'guide'},
  documentation: {api_guide: '/docs/api', memory_concepts: '/docs/memory-systems', examples: '/docs/examples'},
})

async function failure(p: Promise<unknown>): Promise<AdminApiError> {
  try {
    await p
  } catch (error) {
    expect(error).toBeInstanceOf(AdminApiError)
    return error as AdminApiError
  }
  throw new Error('expected the call to fail')
}

describe('against engine serve', () => {
  it('covers health, spaces, remember, list, get, metrics and shutdown', async () => {
    const server = await engram([KEY])
    const c = client({baseUrl: server.url, apiKey: KEY, space: 'tenant-a'})
    await c.alive()
    expect(await c.health()).toMatchObject({status: 'healthy', service: 'engram', version: '0.1.0'})
    expect((await c.createSpace('tenant-a')).id).toBe('tenant-a')
    expect((await c.listSpaces()).map((s) => s.id)).toEqual(['default', 'tenant-a'])

    const r = await c.remember({id: 'm1', content: 'hello', embedding: Array(768).fill(0.1), confidence: 0.9})
    expect(r).toMatchObject({memory_id: 'm1', storage_confidence: {value: 0.9, category: 'High'}})
    const ep = await c.rememberEpisode({when: '2026-11-28T14:02:00Z', what: 'deploy', who: ['ops']}, 'tenant-b')
    expect(ep.memory_id).toMatch(/^ep_[0-9a-f]{8}$/)

    const list = await c.listMemories({limit: 10, includeEmbeddings: true})
    expect(list.count).toBe(1)
    expect(list.memories[0]).toMatchObject({id: 'm1', content: 'hello', confidence: 0.9})
    expect(list.memories[0].embedding).toHaveLength(768)
    expect((await c.listMemories({space: 'tenant-b'})).memories[0].content).toBe('deploy')
    expect(await c.getMemory('m1')).toMatchObject({id: 'm1', content: 'hello', memory_type: 'episodic'})

    const health = await c.systemHealth('tenant-a')
    expect(health.spaces).toEqual([{space: 'tenant-a', memories: 1, pressure: 0, wal_lag_ms: 0, consolidation_rate: 0}])
    expect(await c.metrics()).toContain('engram_memories{space="tenant-a"} 1')

    expect((await c.shutdown()).status).toBe('shutdown_initiated')
    await server.closed
    const down = await failure(client({baseUrl: server.url, retries: 0}).alive())
    expect(down.exitCode).toBe(14)
    expect(down.code).toBe('ENGRAM_UNREACHABLE')
  })

  it('maps Engram errors: 401 exit 13 without the key, 404 and 400 exit 2 with the code', async () => {
    const server = await engram([KEY])
    const wrongKey = `engram_key_${'w'.repeat(24)}_${'W'.repeat(32)}`
    const unauthorized = await failure(client({baseUrl: server.url, apiKey: wrongKey}).health())
    expect(unauthorized.exitCode).toBe(13)
    expect(unauthorized.status).toBe(401)
    expect(unauthorized.apiCode).toBe('UNAUTHORIZED')
    expect(unauthorized.message).toContain(`GET ${server.url}/health failed: HTTP 401 UNAUTHORIZED: Invalid API key format or value`)
    expect(JSON.stringify(unauthorized.toJSON())).not.toContain(wrongKey)
    expect(unauthorized.message).not.toContain(wrongKey)

    const missing = await failure(client({baseUrl: server.url}).alive())
    expect(missing.message).toContain('Missing Authorization header')

    const c = client({baseUrl: server.url, apiKey: KEY})
    const notFound = await failure(c.getMemory('nope', 'tenant-x'))
    expect(notFound).toMatchObject({exitCode: 2, status: 404, apiCode: 'MEMORY_NOT_FOUND'})
    expect(notFound.message).toContain(`GET ${server.url}/api/v1/memories/nope?space=tenant-x failed: HTTP 404 MEMORY_NOT_FOUND`)

    const bad = await failure(c.remember({content: 'x', embedding: [1, 2]}))
    expect(bad).toMatchObject({exitCode: 2, status: 400, apiCode: 'INVALID_MEMORY_INPUT'})
    const invalid = await failure(c.systemHealth('NOT VALID'))
    expect(invalid).toMatchObject({exitCode: 2, status: 422, apiCode: 'MEMORY_VALIDATION_ERROR'})
    // axum's plain-text rejection: no Engram code, the text is the detail.
    const plain = await failure(c.remember({} as never))
    expect(plain).toMatchObject({exitCode: 2, status: 422, apiCode: undefined})
    expect(plain.message).toContain('missing field `content`')
  })
})

describe('transport', () => {
  it('sends the bearer key, X-Memory-Space, ?space= and X-Memory-Space-Id', async () => {
    const {url, seen} = await scripted((_req, res) => json(res, 200, {memories: [], count: 0, pagination: {}, tier_counts: {}}))
    await client({baseUrl: url, apiKey: KEY, space: 'tenant-a'}).listMemories({limit: 5})
    expect(seen).toHaveLength(1)
    expect(seen[0].url).toBe('/api/v1/memories?limit=5&space=tenant-a')
    expect(seen[0].headers.authorization).toBe(`Bearer ${KEY}`)
    expect(seen[0].headers['x-memory-space']).toBe('tenant-a')
    expect(seen[0].headers['x-memory-space-id']).toBe('tenant-a')

    await client({baseUrl: url, space: 'tenant-a'}).remember({content: 'x'}, 'tenant-b')
    expect(seen[1].method).toBe('POST')
    expect(seen[1].url).toBe('/api/v1/memories/remember?space=tenant-b')
    expect(seen[1].headers['content-type']).toBe('application/json')
    expect(seen[1].headers['x-memory-space']).toBe('tenant-b')
    expect(seen[1].headers['x-memory-space-id']).toBeUndefined() // only with a key
    expect(seen[1].headers.authorization).toBeUndefined()
    expect(JSON.parse(seen[1].body)).toEqual({content: 'x'})
  })

  it('retries a 503 honouring Retry-After, for GET and for POST', async () => {
    const {url, seen} = await scripted((req, res, n) => {
      if (n % 3 !== 0) return json(res, 503, envelope('MEMORY_CLUSTER_UNAVAILABLE', 'busy'), {'retry-after': '0'})
      if (req.method === 'POST') return json(res, 201, {memory_id: 'm'})
      json(res, 200, {spaces: [{id: 'default', persistence_root: '/data/default', created_at: 't'}]})
    })
    const c = client({baseUrl: url, backoffMs: 60_000}) // only Retry-After: 0 keeps this fast
    const t0 = Date.now()
    expect((await c.listSpaces()).map((s) => s.id)).toEqual(['default'])
    expect(seen).toHaveLength(3)
    expect((await c.remember({content: 'x'})).memory_id).toBe('m')
    expect(seen).toHaveLength(6)
    expect(Date.now() - t0).toBeLessThan(5000)
  })

  it('gives up after the retries with exit 14 and caps a long Retry-After', async () => {
    const {url, seen} = await scripted((_req, res) => json(res, 503, envelope('MEMORY_CLUSTER_UNAVAILABLE', 'partitioned'), {'retry-after': '3600'}))
    const t0 = Date.now()
    const e = await failure(client({baseUrl: url, retries: 2, maxDelayMs: 20}).alive())
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(seen).toHaveLength(3)
    expect(e).toMatchObject({exitCode: 14, status: 503, apiCode: 'MEMORY_CLUSTER_UNAVAILABLE'})
    expect(e.message).toContain('after 3 attempts')
  })

  it('never retries a POST on a 500, and maps 5xx to exit 14', async () => {
    const {url, seen} = await scripted((_req, res) => json(res, 500, envelope('MEMORY_SYSTEM_ERROR', "Memory 'm' was stored but event notification failed")))
    const e = await failure(client({baseUrl: url}).remember({id: 'm', content: 'x'}))
    expect(seen).toHaveLength(1)
    expect(e).toMatchObject({exitCode: 14, status: 500, apiCode: 'MEMORY_SYSTEM_ERROR'})
    expect(e.message).toContain(`POST ${url}/api/v1/memories/remember failed: HTTP 500 MEMORY_SYSTEM_ERROR: Memory 'm' was stored`)
  })

  it('retries a GET after a dropped connection, but not a POST that may have been received', async () => {
    const {url, seen} = await scripted((req, res, n) => {
      if (n <= 2 || req.method === 'POST') return void res.socket?.destroy()
      json(res, 200, {spaces: []})
    })
    expect(await client({baseUrl: url}).listSpaces()).toEqual([])
    expect(seen).toHaveLength(3)
    const e = await failure(client({baseUrl: url}).remember({content: 'x'}))
    expect(seen).toHaveLength(4)
    expect(e).toMatchObject({exitCode: 14, code: 'ENGRAM_UNREACHABLE'})
  })

  it('retries a refused connection even for POST (nothing was sent), then reports it', async () => {
    const probe = await scripted(() => {})
    const url = probe.url
    await cleanups.pop()!() // close it: the port now refuses connections
    const e = await failure(client({baseUrl: url, retries: 2}).remember({content: 'x'}))
    expect(e).toMatchObject({exitCode: 14, code: 'ENGRAM_UNREACHABLE'})
    expect(e.message).toContain('ECONNREFUSED')
    expect(e.message).toContain('after 3 attempts')
  })

  it('times out on a server that never answers', async () => {
    const {url, seen} = await scripted(() => {
      // never respond
    })
    const t0 = Date.now()
    const e = await failure(client({baseUrl: url, timeoutMs: 300, retries: 1}).health())
    const elapsed = Date.now() - t0
    expect(e).toMatchObject({exitCode: 14, code: 'ENGRAM_TIMEOUT'})
    expect(e.message).toContain('no answer within 300 ms after 2 attempts')
    expect(seen).toHaveLength(2)
    expect(elapsed).toBeGreaterThanOrEqual(550)
    expect(elapsed).toBeLessThan(5000)
    // A POST that timed out may have been stored: one attempt only.
    const p = await failure(client({baseUrl: url, timeoutMs: 300, retries: 3}).remember({content: 'x'}))
    expect(p.code).toBe('ENGRAM_TIMEOUT')
    expect(seen).toHaveLength(3)
  })

  it('reports plain-text and empty error bodies, and a 503 health answer is data, not an error', async () => {
    const {url, seen} = await scripted((req, res) => {
      if (req.url === '/health') return json(res, 503, {status: 'unhealthy', service: 'engram', version: '0.1.0', timestamp: 't'})
      if (req.url === '/api/v1/spaces') {
        res.writeHead(415, {'content-type': 'text/plain; charset=utf-8'})
        return void res.end('Expected request with `Content-Type: application/json`')
      }
      res.writeHead(404)
      res.end()
    })
    const c = client({baseUrl: url})
    expect((await c.health()).status).toBe('unhealthy')
    expect(seen.filter((r) => r.url === '/health')).toHaveLength(1) // not retried
    const plain = await failure(c.createSpace('x-space'))
    expect(plain).toMatchObject({exitCode: 2, status: 415})
    expect(plain.message).toContain('HTTP 415 Expected request with `Content-Type: application/json`')
    const empty = await failure(c.metrics())
    expect(empty).toMatchObject({exitCode: 2, status: 404})
    expect(empty.message).toContain('HTTP 404 empty body')
  })

  it('refuses a base URL that is not http(s) with a usage error', () => {
    expect(() => new AdminClient({baseUrl: 'localhost:7432'})).toThrow(/not an http\(s\) URL/)
    expect(() => new AdminClient({baseUrl: 'nonsense'})).toThrow(expect.objectContaining({exitCode: 2}))
  })

  it('keeps credentials in the URL out of messages', async () => {
    const {url} = await scripted((_req, res) => json(res, 500, envelope('MEMORY_SYSTEM_ERROR', 'boom')))
    const withUser = url.replace('http://', 'http://admin:hunter2@')
    const e = await failure(client({baseUrl: withUser, retries: 0}).alive())
    expect(e.message).not.toContain('hunter2')
    expect(e.message).toContain(`GET ${url}/health/alive failed: HTTP 500 MEMORY_SYSTEM_ERROR: boom`)
  })
})
