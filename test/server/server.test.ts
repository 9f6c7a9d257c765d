/**
 * `engine serve`'s HTTP server against real requests on 127.0.0.1 (undici, no stubs): status codes,
 * bodies, headers and quirks of reference/engram-http-api.md, and what lands in the WAL.
 */
import {existsSync} from 'node:fs'
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {request} from 'undici'
import {afterEach, describe, expect, it} from 'vitest'

import {decodePayload} from '../../src/lib/engine/decode.js'
import {WalFileReader} from '../../src/lib/engine/reader.js'
import {EngineStore} from '../../src/lib/engine/store.js'
import {createEngramServer, type EngramServer, type EngramServerOptions} from '../../src/lib/server/server.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any

interface Started {
  dir: string
  store: EngineStore
  server: EngramServer
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'engram-serve-test-'))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  return dir
}

async function start(o: Partial<EngramServerOptions> = {}, dir?: string): Promise<Started> {
  const root = dir ?? (await tempDir())
  const store = await EngineStore.open(root, {createDefault: true})
  const server = await createEngramServer({store, port: 0, ...o})
  cleanups.push(() => server.close())
  return {dir: root, store, server}
}

interface Res {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: Json
}

async function http(server: EngramServer, method: string, path: string, o: {headers?: Record<string, string>; body?: unknown; raw?: string} = {}): Promise<Res> {
  const headers: Record<string, string> = {...o.headers}
  let body: string | undefined = o.raw
  if (o.body !== undefined) {
    body = JSON.stringify(o.body)
    headers['content-type'] ??= 'application/json'
  }
  const res = await request(`${server.url}${path}`, {method: method as 'GET', headers, body})
  const text = await res.body.text()
  let json: Json
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return {status: res.statusCode, headers: res.headers, text, json}
}

function expectEnvelope(r: Res, status: number, code: string): void {
  expect(r.status).toBe(status)
  expect(r.headers['content-type']).toBe('application/json')
  expect(Object.keys(r.json)).toEqual(['error', 'documentation'])
  expect(r.json.error.code).toBe(code)
  expect(typeof r.json.error.message).toBe('string')
  expect(typeof r.json.error.educational_context).toBe('string')
  expect(typeof r.json.error.cognitive_guidance).toBe('string')
  expect(r.json.documentation).toEqual({api_guide: '/docs/api', memory_concepts: '/docs/memory-systems', examples: '/docs/examples'})
}

function expectPlain(r: Res, status: number, fragment: string): void {
  expect(r.status).toBe(status)
  expect(r.headers['content-type']).toBe('text/plain; charset=utf-8')
  expect(r.text).toContain(fragment)
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6}|\.\d{9})?Z$/
const KEY = `engram_key_${'a'.repeat(24)}_${'B'.repeat(32)}`
const OTHER_KEY = `engram_key_${'c'.repeat(24)}_${'D'.repeat(32)}`

async function walRecords(dir: string, space: string): Promise<Json[]> {
  const walDir = join(dir, space, 'wal')
  const out: Json[] = []
  for (const name of (await readdir(walDir)).sort()) {
    for await (const rec of new WalFileReader(join(walDir, name)).records()) {
      out.push({entryType: rec.header.entryType, sequence: rec.header.sequence, validity: rec.validity, decoded: decodePayload(rec.header.entryType, rec.payload!)})
    }
  }
  return out
}

describe('health and metrics', () => {
  it('GET /health answers Engram\'s summary with the security headers', async () => {
    const {server} = await start()
    const r = await http(server, 'GET', '/health')
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toBe('application/json')
    expect(r.headers['x-content-type-options']).toBe('nosniff')
    expect(r.headers['x-frame-options']).toBe('DENY')
    expect(r.headers['x-xss-protection']).toBe('1; mode=block')
    expect(Object.keys(r.json)).toEqual(['status', 'service', 'version', 'timestamp'])
    expect(r.json).toMatchObject({status: 'healthy', service: 'engram', version: '0.1.0'})
    expect(r.json.timestamp).toMatch(RFC3339)
  })

  it('GET /health/alive is 200 with an empty body', async () => {
    const {server} = await start()
    const r = await http(server, 'GET', '/health/alive')
    expect(r.status).toBe(200)
    expect(r.text).toBe('')
    expect(r.headers['content-length']).toBe('0')
  })

  it('GET /api/v1/system/health has checks, loaded spaces and cluster null; ?space filters and validates', async () => {
    const {server} = await start()
    await http(server, 'POST', '/api/v1/memories/remember', {body: {content: 'one'}})
    const r = await http(server, 'GET', '/api/v1/system/health')
    expect(r.status).toBe(200)
    expect(Object.keys(r.json)).toEqual(['status', 'timestamp', 'checks', 'spaces', 'cluster'])
    expect(r.json.status).toBe('healthy')
    expect(r.json.cluster).toBeNull()
    const names = r.json.checks.map((c: Json) => c.type)
    expect(names).toEqual(expect.arrayContaining(['latency', 'memory']))
    for (const c of r.json.checks) {
      expect(Object.keys(c).sort()).toEqual(
        [
          'consecutive_failures',
          'consecutive_successes',
          'last_failure_seconds_ago',
          'last_run_seconds_ago',
          'last_success_seconds_ago',
          'latency_seconds',
          'message',
          'name',
          'status',
          'type',
        ].sort(),
      )
    }
    expect(r.json.spaces).toEqual([{space: 'default', memories: 1, pressure: 0, wal_lag_ms: 0, consolidation_rate: 0}])

    expect((await http(server, 'GET', '/api/v1/system/health?space=default')).json.spaces).toHaveLength(1)
    // A valid space that is not loaded: empty list, and it is not created.
    const unknown = await http(server, 'GET', '/api/v1/system/health?space=nobody-here')
    expect(unknown.status).toBe(200)
    expect(unknown.json.spaces).toEqual([])
    expectEnvelope(await http(server, 'GET', '/api/v1/system/health?space=Not%20Valid!'), 422, 'MEMORY_VALIDATION_ERROR')
  })

  it('GET /metrics/prometheus exposes text format 0.0.4 with per-space gauges and request counters', async () => {
    const {server} = await start()
    await http(server, 'POST', '/api/v1/memories/remember', {body: {content: 'one'}})
    await http(server, 'POST', '/api/v1/memories/remember', {body: {content: 'two'}, headers: {'x-memory-space': 'tenant-a'}})
    const r = await http(server, 'GET', '/metrics/prometheus')
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4')
    expect(r.text).toContain('# TYPE engram_memories gauge')
    expect(r.text).toContain('engram_memories{space="default"} 1')
    expect(r.text).toContain('engram_memories{space="tenant-a"} 1')
    expect(r.text).toMatch(/engram_wal_bytes\{space="default"\} [1-9]\d*/)
    expect(r.text).toContain('engram_http_requests_total{method="POST",route="/api/v1/memories/remember",status="201"} 2')
  })
})

describe('spaces', () => {
  it('lists default, creates idempotently with 201, sorts by id and rejects bad ids with 400', async () => {
    const {server, dir} = await start()
    const first = await http(server, 'GET', '/api/v1/spaces')
    expect(first.status).toBe(200)
    expect(first.json.spaces.map((s: Json) => s.id)).toEqual(['default'])

    const created = await http(server, 'POST', '/api/v1/spaces', {body: {id: 'zeta'}})
    expect(created.status).toBe(201)
    expect(created.json).toEqual({id: 'zeta', persistence_root: join(dir, 'zeta'), created_at: expect.stringMatching(RFC3339)})
    expect(existsSync(join(dir, 'zeta', 'wal'))).toBe(true)
    const again = await http(server, 'POST', '/api/v1/spaces', {body: {id: 'zeta'}})
    expect(again.status).toBe(201)
    expect(again.json).toEqual(created.json)
    await http(server, 'POST', '/api/v1/spaces', {body: {id: 'alpha'}})
    expect((await http(server, 'GET', '/api/v1/spaces')).json.spaces.map((s: Json) => s.id)).toEqual(['alpha', 'default', 'zeta'])

    expectEnvelope(await http(server, 'POST', '/api/v1/spaces', {body: {id: 'Bad Space!'}}), 400, 'INVALID_MEMORY_INPUT')
    expectEnvelope(await http(server, 'POST', '/api/v1/spaces', {body: {id: 'ab'}}), 400, 'INVALID_MEMORY_INPUT')
    expectPlain(await http(server, 'POST', '/api/v1/spaces', {body: {}}), 422, 'missing field `id`')
  })

  it('lists only spaces loaded in this process, like Engram, although all are on disk', async () => {
    const dir = await tempDir()
    const a = await start({}, dir)
    await http(a.server, 'POST', '/api/v1/memories/remember', {body: {content: 'x'}, headers: {'x-memory-space': 'on-disk'}})
    await a.server.close()
    const b = await start({}, dir)
    expect((await http(b.server, 'GET', '/api/v1/spaces')).json.spaces.map((s: Json) => s.id)).toEqual(['default'])
    // First use loads it (and its memories).
    const list = await http(b.server, 'GET', '/api/v1/memories?space=on-disk')
    expect(list.json.count).toBe(1)
    expect((await http(b.server, 'GET', '/api/v1/spaces')).json.spaces.map((s: Json) => s.id)).toEqual(['default', 'on-disk'])
  })
})

describe('remember', () => {
  it('POST /api/v1/memories/remember stores an Episode record in the WAL and answers RememberResponse', async () => {
    const {server, dir} = await start()
    const embedding = Array.from({length: 768}, (_, i) => i / 1000)
    const r = await http(server, 'POST', '/api/v1/memories/remember', {
      body: {
        id: 'm-1',
        content: 'the cat sat on the mat',
        embedding,
        confidence: 0.9,
        timestamp: '2026-11-28T16:02:00.5+02:00',
        tags: ['dropped'],
        memory_type: 'semantic',
        confidence_reasoning: 'seen twice',
      },
    })
    expect(r.status).toBe(201)
    expect(r.json).toEqual({
      memory_id: 'm-1',
      storage_confidence: {value: 0.9, category: 'High', reasoning: 'seen twice'},
      consolidation_state: 'Recent',
      observed_at: '2026-11-28T14:02:00.500Z',
      stored_at: expect.stringMatching(RFC3339),
      links: {consolidation: '/api/v1/consolidations'},
      auto_links: [],
      system_message: expect.stringContaining("'m-1'"),
    })

    const records = await walRecords(dir, 'default')
    expect(records).toHaveLength(1)
    const [rec] = records
    expect(rec.entryType).toBe(1)
    expect(rec.validity).toBe('ok')
    expect(rec.decoded.kind).toBe('episode')
    const e = rec.decoded.episode
    expect(e.id).toBe('m-1')
    expect(e.what).toBe('the cat sat on the mat')
    expect(e.when).toBe('2026-11-28T14:02:00.500Z')
    expect(e.embedding).toHaveLength(768)
    expect(e.embedding[500]).toBe(Math.fround(0.5))
    expect(e.encodingConfidence).toBe(Math.fround(0.9))
    expect(e.vividnessConfidence).toBe(Math.fround(0.9))
    expect(e.reliabilityConfidence).toBe(Math.fround(0.9))
    expect(e.decayRate).toBe(Math.fround(0.05))
    expect(e.recallCount).toBe(0)
    expect(e.lastRecall).toMatch(RFC3339)
    expect(e).toMatchObject({whereLocation: null, who: null, embeddingProvenance: null, decayFunction: null, metadata: []})
  })

  it('defaults: mem_ + 8 hex id, [0.5; 768] embedding, confidence 0.7 (Medium), timestamp now', async () => {
    const {server, dir} = await start()
    const r = await http(server, 'POST', '/api/v1/memories/remember', {body: {content: 'defaults'}})
    expect(r.status).toBe(201)
    expect(r.json.memory_id).toMatch(/^mem_[0-9a-f]{8}$/)
    expect(r.json.storage_confidence).toMatchObject({value: 0.7, category: 'Medium'})
    const e = (await walRecords(dir, 'default'))[0].decoded.episode
    expect(e.id).toBe(r.json.memory_id)
    expect(new Set(e.embedding)).toEqual(new Set([0.5]))
    expect(Math.abs(Date.parse(e.when) - Date.now())).toBeLessThan(60_000)
  })

  it('rejects bad input with Engram\'s codes: 400 envelope from the handler, plain 400/413/415/422 from the framework', async () => {
    const {server} = await start({maxBodyBytes: 256 * 1024})
    const path = '/api/v1/memories/remember'
    expectEnvelope(await http(server, 'POST', path, {body: {content: '   '}}), 400, 'INVALID_MEMORY_INPUT')
    const short = await http(server, 'POST', path, {body: {content: 'x', embedding: [1, 2, 3]}})
    expectEnvelope(short, 400, 'INVALID_MEMORY_INPUT')
    expect(short.json.error.message).toContain('768')
    expectEnvelope(await http(server, 'POST', path, {body: {content: 'x'.repeat(100_001)}}), 400, 'INVALID_MEMORY_INPUT')
    expect((await http(server, 'POST', path, {body: {content: 'é'.repeat(50_000)}})).status).toBe(201) // exactly 100000 bytes
    expectPlain(await http(server, 'POST', path, {body: {confidence: 0.5}}), 422, 'missing field `content`')
    expectPlain(await http(server, 'POST', path, {body: {content: 42}}), 422, 'content: invalid type')
    expectPlain(await http(server, 'POST', path, {body: ['content']}), 422, 'expected struct RememberMemoryRequest')
    expectPlain(await http(server, 'POST', path, {body: {content: 'x', timestamp: 'yesterday'}}), 422, 'timestamp')
    expectPlain(await http(server, 'POST', path, {raw: '{"content": ', headers: {'content-type': 'application/json'}}), 400, 'Failed to parse the request body as JSON')
    expectPlain(await http(server, 'POST', path, {raw: '{"content":"x"}'}), 415, 'Content-Type: application/json')
    expectPlain(await http(server, 'POST', path, {raw: '{"content":"x"}', headers: {'content-type': 'text/plain'}}), 415, 'Content-Type')
    expect((await http(server, 'POST', path, {raw: '{"content":"x"}', headers: {'content-type': 'application/json; charset=utf-8'}})).status).toBe(201)
    expectPlain(await http(server, 'POST', path, {body: {content: 'y'.repeat(300 * 1024)}}), 413, 'length limit exceeded')
  })

  it('stores contents larger than the encoder\'s first buffer byte-exactly (4 KiB to 100000 bytes)', async () => {
    const {server, dir} = await start()
    const contents = [4050, 5000, 65_536, 100_000].map((n, i) => String.fromCharCode(97 + i).repeat(n))
    for (const [i, content] of contents.entries()) {
      expect((await http(server, 'POST', '/api/v1/memories/remember', {body: {id: `big-${i}`, content}})).status).toBe(201)
    }
    const records = await walRecords(dir, 'default')
    expect(records.map((r) => r.decoded.kind)).toEqual(['episode', 'episode', 'episode', 'episode'])
    expect(records.map((r) => r.decoded.episode.what)).toEqual(contents)
    expect((await http(server, 'GET', '/api/v1/memories/big-3')).json.content).toBe(contents[3])
  })

  it('POST /api/v1/episodes/remember stores where/who/importance with an ep_ id and [0.6; 768]', async () => {
    const {server, dir} = await start()
    const r = await http(server, 'POST', '/api/v1/episodes/remember', {
      body: {when: '2026-01-02T03:04:05Z', what: 'standup', where_location: 'room 4', who: ['ana', 'bo'], importance: 0.25, why: 'dropped'},
    })
    expect(r.status).toBe(201)
    expect(r.json.memory_id).toMatch(/^ep_[0-9a-f]{8}$/)
    expect(r.json.observed_at).toBe('2026-01-02T03:04:05Z')
    expect(r.json.storage_confidence).toMatchObject({value: 0.25, category: 'Low'})
    const e = (await walRecords(dir, 'default'))[0].decoded.episode
    expect(e).toMatchObject({id: r.json.memory_id, what: 'standup', when: '2026-01-02T03:04:05Z', whereLocation: 'room 4', who: ['ana', 'bo']})
    expect(e.encodingConfidence).toBe(0.25)
    expect(new Set(e.embedding)).toEqual(new Set([Math.fround(0.6)]))
    expectPlain(await http(server, 'POST', '/api/v1/episodes/remember', {body: {what: 'no when'}}), 422, 'missing field `when`')
    expectEnvelope(await http(server, 'POST', '/api/v1/episodes/remember', {body: {when: '2026-01-02T03:04:05Z', what: ''}}), 400, 'INVALID_MEMORY_INPUT')
  })

  it('POST /api/v1/memories (CLI shim) takes {content, confidence} and the space from the header only', async () => {
    const {server, dir} = await start()
    const r = await http(server, 'POST', '/api/v1/memories', {body: {content: 'shim', confidence: 0.8, memory_space_id: 'ignored-space'}})
    expect(r.status).toBe(201)
    expect(r.json.memory_id).toMatch(/^mem_[0-9a-f]{8}$/)
    expect(existsSync(join(dir, 'ignored-space'))).toBe(false)
    const h = await http(server, 'POST', '/api/v1/memories', {body: {content: 'shim'}, headers: {'X-Memory-Space': 'tenant-b'}})
    expect(h.status).toBe(201)
    expect((await walRecords(dir, 'tenant-b'))[0].decoded.episode.id).toBe(h.json.memory_id)
  })

  it('serves a memory after the store is closed and reopened', async () => {
    const dir = await tempDir()
    const a = await start({}, dir)
    await http(a.server, 'POST', '/api/v1/memories/remember', {body: {id: 'durable', content: 'still here', confidence: 0.6}, headers: {'x-memory-space': 'keep'}})
    await a.server.close()
    const b = await start({}, dir)
    const r = await http(b.server, 'GET', '/api/v1/memories/durable?space=keep')
    expect(r.status).toBe(200)
    expect(r.json).toEqual({id: 'durable', content: 'still here', confidence: 0.6, timestamp: expect.stringMatching(RFC3339), memory_type: 'episodic'})
  })
})

describe('space selection', () => {
  it('remember: header beats body, the query string is ignored, body beats default', async () => {
    const {server, dir} = await start()
    const path = '/api/v1/memories/remember'
    await http(server, 'POST', `${path}?space=from-query`, {body: {id: 'h', content: 'x', memory_space_id: 'from-body'}, headers: {'X-MEMORY-SPACE': 'from-header'}})
    await http(server, 'POST', `${path}?space=from-query`, {body: {id: 'b', content: 'x', memory_space_id: 'from-body'}})
    await http(server, 'POST', `${path}?space=from-query`, {body: {id: 'd', content: 'x'}})
    expect((await walRecords(dir, 'from-header')).map((r) => r.decoded.episode.id)).toEqual(['h'])
    expect((await walRecords(dir, 'from-body')).map((r) => r.decoded.episode.id)).toEqual(['b'])
    expect((await walRecords(dir, 'default')).map((r) => r.decoded.episode.id)).toEqual(['d'])
    expect(existsSync(join(dir, 'from-query'))).toBe(false)
    expectEnvelope(await http(server, 'POST', path, {body: {content: 'x'}, headers: {'x-memory-space': 'NOPE'}}), 400, 'INVALID_MEMORY_INPUT')
  })

  it('reads: header beats ?space=, ?space= beats default; a read creates an unknown valid space', async () => {
    const {server, dir} = await start()
    await http(server, 'POST', '/api/v1/memories/remember', {body: {id: 'in-a', content: 'a'}, headers: {'x-memory-space': 'space-a'}})
    await http(server, 'POST', '/api/v1/memories/remember', {body: {id: 'in-b', content: 'b'}, headers: {'x-memory-space': 'space-b'}})
    const byHeader = await http(server, 'GET', '/api/v1/memories?space=space-b', {headers: {'x-memory-space': 'space-a'}})
    expect(byHeader.json.memories.map((m: Json) => m.id)).toEqual(['in-a'])
    const byQuery = await http(server, 'GET', '/api/v1/memories?space=space-b')
    expect(byQuery.json.memories.map((m: Json) => m.id)).toEqual(['in-b'])
    expect((await http(server, 'GET', '/api/v1/memories/in-a?space=space-b', {headers: {'x-memory-space': 'space-a'}})).status).toBe(200)
    expectEnvelope(await http(server, 'GET', '/api/v1/memories/in-a?space=space-b'), 404, 'MEMORY_NOT_FOUND')
    expect((await http(server, 'GET', '/api/v1/memories')).json.count).toBe(0)

    expect(existsSync(join(dir, 'typo-space'))).toBe(false)
    expect((await http(server, 'GET', '/api/v1/memories?space=typo-space')).status).toBe(200)
    expect(existsSync(join(dir, 'typo-space', 'wal'))).toBe(true)
  })
})

describe('memories', () => {
  it('GET /api/v1/memories pages with offset/limit, counts tiers and includes embeddings on request', async () => {
    const {server} = await start()
    for (let i = 0; i < 5; i++) {
      await http(server, 'POST', '/api/v1/memories/remember', {body: {id: `m${i}`, content: `c${i}`, embedding: Array(768).fill(0.25), confidence: 0.3}})
    }
    const r = await http(server, 'GET', '/api/v1/memories?offset=1&limit=2')
    expect(r.status).toBe(200)
    expect(r.json).toEqual({
      memories: [
        {id: 'm1', content: 'c1', confidence: 0.3, timestamp: expect.stringMatching(RFC3339)},
        {id: 'm2', content: 'c2', confidence: 0.3, timestamp: expect.stringMatching(RFC3339)},
      ],
      count: 2,
      pagination: {offset: 1, limit: 2, returned: 2},
      tier_counts: {hot: 5, warm: 0, cold: 0, total: 5},
    })
    const withEmb = await http(server, 'GET', '/api/v1/memories?limit=1&include_embeddings=true&tier=all')
    expect(withEmb.json.memories[0].embedding).toHaveLength(768)
    expect(withEmb.json.memories[0].embedding[0]).toBe(0.25)
    expect((await http(server, 'GET', '/api/v1/memories?limit=5000')).json.pagination.limit).toBe(1000)
    const zero = await http(server, 'GET', '/api/v1/memories?limit=0')
    expect(zero.json).toMatchObject({count: 0, memories: [], tier_counts: {total: 5}})
    const warm = await http(server, 'GET', '/api/v1/memories?tier=warm')
    expect(warm.json).toMatchObject({count: 0, memories: [], tier_counts: {hot: 5, warm: 0, cold: 0, total: 5}})
    expectEnvelope(await http(server, 'GET', '/api/v1/memories?tier=lukewarm'), 400, 'BAD_REQUEST')
    expectPlain(await http(server, 'GET', '/api/v1/memories?offset=-1'), 400, 'Failed to deserialize query string')
    expectPlain(await http(server, 'GET', '/api/v1/memories?include_embeddings=yes'), 400, 'Failed to deserialize query string')
  })

  it('GET /api/v1/memories/{id} answers 200 or 404 MEMORY_NOT_FOUND; DELETE is always 200 not_supported', async () => {
    const {server} = await start()
    await http(server, 'POST', '/api/v1/memories/remember', {body: {id: 'a b/c', content: 'odd id'}})
    const r = await http(server, 'GET', `/api/v1/memories/${encodeURIComponent('a b/c')}`)
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({id: 'a b/c', content: 'odd id', confidence: 0.7, memory_type: 'episodic'})
    expectEnvelope(await http(server, 'GET', '/api/v1/memories/missing'), 404, 'MEMORY_NOT_FOUND')
    const del = await http(server, 'DELETE', '/api/v1/memories/missing')
    expect(del.status).toBe(200)
    expect(del.json.status).toBe('not_supported')
    const delReal = await http(server, 'DELETE', `/api/v1/memories/${encodeURIComponent('a b/c')}`)
    expect(delReal.json.status).toBe('not_supported')
    expect((await http(server, 'GET', `/api/v1/memories/${encodeURIComponent('a b/c')}`)).status).toBe(200)
  })
})

describe('routing', () => {
  it('unknown route 404 empty, wrong method 405 with Allow, unimplemented Engram routes 501', async () => {
    const {server} = await start()
    const missing = await http(server, 'GET', '/api/v1/nothing')
    expect(missing.status).toBe(404)
    expect(missing.text).toBe('')
    expect(missing.headers['x-content-type-options']).toBe('nosniff')
    const wrong = await http(server, 'GET', '/api/v1/memories/remember')
    expect(wrong.status).toBe(405)
    expect(wrong.headers.allow).toBe('POST')
    expect((await http(server, 'PUT', '/health')).status).toBe(405)
    expect((await http(server, 'GET', '/shutdown')).status).toBe(405)
    expectEnvelope(await http(server, 'GET', '/api/v1/memories/recall?query=x'), 501, 'NOT_IMPLEMENTED')
    const cluster = await http(server, 'GET', '/cluster/health')
    expectEnvelope(cluster, 501, 'FEATURE_NOT_ENABLED')
    expect(cluster.json.error.message).toBe('Cluster mode disabled')
    const spreading = await http(server, 'GET', '/health/spreading')
    expect(spreading.status).toBe(404)
    expect(spreading.json).toEqual({status: 'unknown', message: 'Spreading probe not registered'})
  })

  it('answers CORS preflights and tags responses for browsers', async () => {
    const {server} = await start({apiKeys: [KEY]})
    const pre = await http(server, 'OPTIONS', '/api/v1/spaces', {headers: {origin: 'http://ui.local', 'access-control-request-method': 'POST'}})
    expect(pre.status).toBe(200)
    expect(pre.headers['access-control-allow-origin']).toBe('*')
    const r = await http(server, 'GET', '/health', {headers: {origin: 'http://ui.local', authorization: `Bearer ${KEY}`}})
    expect(r.headers['access-control-allow-origin']).toBe('*')
  })
})

describe('authentication', () => {
  it('requires a bearer key on every route, public ones included', async () => {
    const {server} = await start({apiKeys: [KEY, OTHER_KEY]})
    for (const path of ['/health/alive', '/health', '/metrics/prometheus', '/api/v1/spaces', '/no/such/route']) {
      const r = await http(server, 'GET', path)
      expectEnvelope(r, 401, 'UNAUTHORIZED')
      expect(r.json.error.message).toBe('Missing Authorization header')
      expect(r.headers['x-frame-options']).toBe('DENY')
      expect(r.headers['www-authenticate']).toBeUndefined()
    }
    const wrong = await http(server, 'GET', '/health/alive', {headers: {authorization: `Bearer engram_key_${'z'.repeat(24)}_${'z'.repeat(32)}`}})
    expectEnvelope(wrong, 401, 'UNAUTHORIZED')
    expect(wrong.json.error.message).toBe('Invalid API key format or value')
    expect((await http(server, 'GET', '/health/alive', {headers: {authorization: 'Bearer nonsense'}})).json.error.message).toBe('Invalid API key format or value')
    expect((await http(server, 'GET', '/health/alive', {headers: {authorization: KEY}})).status).toBe(401)
    expect((await http(server, 'GET', '/health/alive', {headers: {authorization: `Bearer ${KEY}`}})).status).toBe(200)
    expect((await http(server, 'GET', '/health/alive', {headers: {authorization: `Bearer ${OTHER_KEY}`}})).status).toBe(200)
    const post = await http(server, 'POST', '/api/v1/memories/remember', {body: {content: 'x'}, headers: {authorization: `Bearer ${OTHER_KEY}`}})
    expect(post.status).toBe(201)
  })

  it('refuses malformed configured keys without echoing them', async () => {
    const store = await EngineStore.open(await tempDir())
    cleanups.push(() => store.close())
    await expect(createEngramServer({store, port: 0, apiKeys: ['engram_key_short_secret']})).rejects.toThrow(/API key #1/)
    await expect(createEngramServer({store, port: 0, apiKeys: ['engram_key_short_secret']})).rejects.not.toThrow(/short_secret/)
  })
})

describe('lifecycle', () => {
  it('writes the PID file as pid:port, POST /shutdown answers then closes, flushes and removes it', async () => {
    const dir = await tempDir()
    const pidFile = join(dir, 'engram.pid')
    const {server} = await start({pidFile}, dir)
    expect(await readFile(pidFile, 'utf8')).toBe(`${process.pid}:${server.port}`)
    // Concurrent first writes, to the default space and to a space that does not exist yet.
    const writes = Promise.all(
      Array.from({length: 40}, (_, i) =>
        http(server, 'POST', '/api/v1/memories/remember', {body: {id: `w${i % 20}`, content: `w${i % 20}`, memory_space_id: i < 20 ? 'default' : 'fresh-space'}}),
      ),
    )
    expect((await writes).every((r) => r.status === 201)).toBe(true)
    // The index points at the right records (two racing writers would both count offsets from 0).
    for (let i = 0; i < 20; i++) {
      expect((await http(server, 'GET', `/api/v1/memories/w${i}?space=fresh-space`)).json.content).toBe(`w${i}`)
      expect((await http(server, 'GET', `/api/v1/memories/w${i}`)).json.content).toBe(`w${i}`)
    }
    const r = await http(server, 'POST', '/shutdown')
    expect(r.status).toBe(200)
    expect(r.json).toEqual({status: 'shutdown_initiated', message: expect.any(String)})
    await server.closed
    expect(existsSync(pidFile)).toBe(false)
    await expect(request(`${server.url}/health/alive`)).rejects.toThrow()
    // Every acknowledged write is in the WAL, in one file per space (one writer despite the concurrent first writes).
    for (const space of ['default', 'fresh-space']) {
      expect(await readdir(join(dir, space, 'wal'))).toHaveLength(1)
      const recs = await walRecords(dir, space)
      expect(recs.map((x) => x.decoded.episode.id).sort()).toEqual(Array.from({length: 20}, (_, i) => `w${i}`).sort())
      expect(recs.map((x) => Number(x.sequence))).toEqual(Array.from({length: 20}, (_, i) => i))
    }
  })

  it('refuses a port in use with exit code 12', async () => {
    const {server} = await start()
    const store = await EngineStore.open(await tempDir())
    cleanups.push(() => store.close())
    await expect(createEngramServer({store, port: server.port})).rejects.toMatchObject({exitCode: 12, code: 'PORT_IN_USE'})
  })
})
