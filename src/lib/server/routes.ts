/**
 * The handlers of `engine serve`: Engram's operational routes over an EngineStore, with Engram's status
 * codes, bodies, space-selection rules and quirks (reference/engram-http-api.md §3-§4).
 *
 * "Loaded" spaces: Engram lists (GET /api/v1/spaces, system health) only the spaces its registry has
 * loaded in this process: `default` plus every space touched since start. Spaces on disk load lazily on
 * first use. EngineStore replays every space at open, but we keep Engram's visible behaviour by tracking
 * which spaces have been touched, so a client tested here copes with the real server.
 */
import {randomBytes} from 'node:crypto'
import type {IncomingMessage} from 'node:http'

import type {
  ConfidenceInfo,
  MemoryList,
  MemoryRecord,
  MemorySummary,
  RememberResponse,
  SpaceDescriptor,
  SystemHealth,
  Tier,
} from '../admin/types.js'
import {formatRfc3339, nowNs} from '../engine/datetime.js'
import {isValidSpaceId} from '../engine/layout.js'
import {EMBEDDING_DIM, type Episode} from '../engine/payload.js'
import type {EngineStore, SpaceState} from '../engine/store.js'
import {badRequest, invalidInput, memoryNotFound, PlainError, validationError} from './errors.js'
import {HealthProbes, worstStatus} from './health.js'
import {PROMETHEUS_CONTENT_TYPE, type ServerMetrics} from './metrics.js'
import {f32ToJson, Fields, header, Query, readJson} from './request.js'

export const ENGRAM_VERSION = '0.1.0'
const MAX_CONTENT_BYTES = 100_000
const MAX_PAGE = 1000

export interface Reply {
  status: number
  json?: unknown
  text?: string
  contentType?: string
  headers?: Record<string, string>
  /** Runs once the response has been sent (used by /shutdown). */
  after?: () => void
}

export interface RequestContext {
  req: IncomingMessage
  url: URL
  query: Query
  /** Path parameters, already percent-decoded. */
  params: Record<string, string>
}

const rfc3339 = (d: Date) => formatRfc3339(BigInt(d.getTime()) * 1_000_000n)

function mintId(prefix: string): string {
  return `${prefix}${randomBytes(4).toString('hex')}`
}

/** Engram's confidence_category, compared in f32 as Rust does (so 0.7 is "Medium"). */
function confidenceInfo(value: number, reasoning: string): ConfidenceInfo {
  const v = Math.fround(value)
  const category = v > Math.fround(0.7) ? 'High' : v > Math.fround(0.4) ? 'Medium' : 'Low'
  return {value: f32ToJson(v), category, reasoning}
}

/** Confidence::exact clamps into [0, 1]; the WAL decoder rejects anything else. */
const clamp01 = (v: number) => Math.min(1, Math.max(0, v))

/** MemorySpaceId::try_from: trimmed, 3-64 characters of [a-z0-9_-]. */
function spaceId(raw: string): string {
  const id = raw.trim()
  if (!isValidSpaceId(id)) {
    throw invalidInput(`Invalid memory space id '${raw}': use 3-64 characters of lowercase letters, digits, '_' and '-'.`)
  }
  return id
}

/** The first candidate that is present wins; `default` when none is. */
function pickSpace(...candidates: Array<string | undefined>): string {
  for (const c of candidates) if (c !== undefined) return spaceId(c)
  return 'default'
}

function embeddingOr(e: Float32Array | undefined, fill: number): Float32Array {
  const v = e ?? new Float32Array(EMBEDDING_DIM).fill(fill)
  if (v.length !== EMBEDDING_DIM) throw invalidInput(`Embedding must be exactly ${EMBEDDING_DIM} dimensions, got ${v.length}`)
  return v
}

export class EngramApi {
  /** Spaces Engram would report as loaded (see the file comment). */
  private readonly touched = new Set<string>(['default'])
  private readonly probes: HealthProbes

  constructor(
    private readonly store: EngineStore,
    private readonly metrics: ServerMetrics,
    private readonly maxBodyBytes: number,
    private readonly onShutdown: () => void,
  ) {
    this.probes = new HealthProbes(store.root)
  }

  /** Engram's registry.create_or_get: any data-plane call with an unknown valid space creates it. */
  private async useSpace(id: string): Promise<SpaceState> {
    const space = await this.store.space(id)
    this.touched.add(id)
    return space
  }

  private async persist(space: SpaceState, episode: Episode): Promise<void> {
    await this.store.remember(space.id, episode)
  }

  private json(ctx: RequestContext): Promise<unknown> {
    return readJson(ctx.req, this.maxBodyBytes)
  }

  // ------------------------------------------------------------------ health and metrics

  async health(): Promise<Reply> {
    const status = worstStatus(await this.probes.run())
    return {
      status: status === 'unhealthy' ? 503 : 200,
      json: {status, service: 'engram', version: ENGRAM_VERSION, timestamp: rfc3339(new Date())},
    }
  }

  alive(): Reply {
    return {status: 200}
  }

  /** Engram registers no spreading probe unless spreading is enabled: 404 with this body. */
  spreadingHealth(): Reply {
    return {status: 404, json: {status: 'unknown', message: 'Spreading probe not registered'}}
  }

  async systemHealth(ctx: RequestContext): Promise<Reply> {
    const filter = ctx.query.string('space')
    if (filter !== undefined && !isValidSpaceId(filter)) {
      throw validationError(`Invalid memory space id '${filter}': use 3-64 characters of lowercase letters, digits, '_' and '-'.`)
    }
    const checks = await this.probes.run()
    const ids = [...this.touched].filter((id) => this.store.get(id) && (filter === undefined || id === filter.trim())).sort()
    const body: SystemHealth = {
      status: worstStatus(checks),
      timestamp: rfc3339(new Date()),
      checks,
      // pressure, wal_lag_ms and consolidation_rate are hard-coded 0 in Engram as well.
      spaces: ids.map((id) => ({space: id, memories: this.store.get(id)!.live.size, pressure: 0, wal_lag_ms: 0, consolidation_rate: 0})),
      cluster: null,
    }
    return {status: body.status === 'unhealthy' ? 503 : 200, json: body}
  }

  async prometheus(): Promise<Reply> {
    return {status: 200, text: await this.metrics.render(this.store), contentType: PROMETHEUS_CONTENT_TYPE}
  }

  // ------------------------------------------------------------------ spaces

  private descriptor(s: SpaceState): SpaceDescriptor {
    return {id: s.id, persistence_root: s.path, created_at: rfc3339(s.createdAt)}
  }

  listSpaces(): Reply {
    const spaces = [...this.touched].sort().flatMap((id) => {
      const s = this.store.get(id)
      return s ? [this.descriptor(s)] : []
    })
    return {status: 200, json: {spaces}}
  }

  /** Idempotent create-or-get: 201 whether or not the space existed. */
  async createSpace(ctx: RequestContext): Promise<Reply> {
    const id = spaceId(new Fields(await this.json(ctx), 'CreateSpaceRequest').string('id', true))
    return {status: 201, json: this.descriptor(await this.useSpace(id))}
  }

  // ------------------------------------------------------------------ writes

  private async storeEpisode(
    space: string,
    e: {id: string; whenNs: bigint; what: string; whereLocation: string | null; who: string[] | null; embedding: Float32Array; confidence: number},
  ): Promise<{confidence: number; observedAt: string}> {
    const s = await this.useSpace(space)
    const confidence = clamp01(e.confidence)
    const when = formatRfc3339(e.whenNs)
    await this.persist(s, {
      id: e.id,
      when,
      whereLocation: e.whereLocation,
      who: e.who,
      what: e.what,
      embedding: e.embedding,
      embeddingProvenance: null,
      // Episode::new starts vividness and reliability at the encoding confidence.
      encodingConfidence: confidence,
      vividnessConfidence: confidence,
      reliabilityConfidence: confidence,
      lastRecall: formatRfc3339(nowNs()),
      recallCount: 0,
      decayRate: 0.05,
      decayFunction: null,
      metadata: [],
    })
    return {confidence, observedAt: when}
  }

  private rememberReply(id: string, confidence: number, observedAt: string, reasoning: string, message: string): Reply {
    const body: RememberResponse = {
      memory_id: id,
      storage_confidence: confidenceInfo(confidence, reasoning),
      consolidation_state: 'Recent',
      observed_at: observedAt,
      stored_at: rfc3339(new Date()),
      links: {consolidation: '/api/v1/consolidations'},
      // Engram's auto_links are a hard-coded placeholder; nothing is linked here either.
      auto_links: [],
      system_message: message,
    }
    return {status: 201, json: body}
  }

  private checkContent(content: string): void {
    if (content.trim() === '') throw invalidInput('Memory content cannot be empty: a memory needs something to remember.')
    const bytes = Buffer.byteLength(content, 'utf8')
    if (bytes > MAX_CONTENT_BYTES) throw invalidInput(`Memory content is ${bytes} bytes; the maximum is ${MAX_CONTENT_BYTES} bytes.`)
  }

  /** POST /api/v1/memories/remember. Space: header, then body (the query string is not read). */
  async rememberMemory(ctx: RequestContext): Promise<Reply> {
    const f = new Fields(await this.json(ctx), 'RememberMemoryRequest')
    const id = f.string('id')
    const content = f.string('content', true)
    const embedding = f.floats('embedding')
    const confidence = f.number('confidence') ?? 0.7
    const reasoning = f.string('confidence_reasoning')
    // Accepted for compatibility and dropped, as Engram drops them when it stores the Episode.
    f.strings('tags')
    f.string('memory_type')
    f.boolean('auto_link')
    f.number('link_threshold')
    const timestamp = f.time('timestamp')
    const space = pickSpace(header(ctx.req, 'x-memory-space'), f.string('memory_space_id'))
    return this.remember(space, {id, content, embedding, confidence, reasoning, timestamp})
  }

  /** POST /api/v1/memories, the Rust CLI's shim: `{content, confidence?}`, space from the header only. */
  async createMemory(ctx: RequestContext): Promise<Reply> {
    const f = new Fields(await this.json(ctx), 'CreateMemoryRequest')
    const content = f.string('content', true)
    const confidence = f.number('confidence') ?? 0.7
    return this.remember(pickSpace(header(ctx.req, 'x-memory-space')), {content, confidence})
  }

  private async remember(
    space: string,
    r: {id?: string; content: string; embedding?: Float32Array; confidence: number; reasoning?: string; timestamp?: bigint},
  ): Promise<Reply> {
    this.checkContent(r.content)
    const embedding = embeddingOr(r.embedding, 0.5)
    const id = r.id ?? mintId('mem_')
    const stored = await this.storeEpisode(space, {
      id,
      whenNs: r.timestamp ?? nowNs(),
      what: r.content,
      whereLocation: null,
      who: null,
      embedding,
      confidence: r.confidence,
    })
    const shown = f32ToJson(stored.confidence).toFixed(2)
    return this.rememberReply(
      id,
      stored.confidence,
      stored.observedAt,
      r.reasoning ?? `Stored with confidence ${shown}`,
      `Memory '${id}' successfully encoded with ${shown} confidence in memory space '${space}'.`,
    )
  }

  /** POST /api/v1/episodes/remember. Space: header, then body. */
  async rememberEpisode(ctx: RequestContext): Promise<Reply> {
    const f = new Fields(await this.json(ctx), 'RememberEpisodeRequest')
    const id = f.string('id')
    const whenNs = f.time('when', true)
    const what = f.string('what', true)
    const whereLocation = f.string('where_location') ?? null
    const who = f.strings('who') ?? null
    // why, how and emotional_valence are accepted and not persisted, as in Engram.
    f.string('why')
    f.string('how')
    f.number('emotional_valence')
    f.boolean('auto_link')
    const embedding = f.floats('embedding')
    const importance = f.number('importance') ?? 0.5
    const space = pickSpace(header(ctx.req, 'x-memory-space'), f.string('memory_space_id'))
    if (what.trim() === '') throw invalidInput("Episode description cannot be empty: an episode needs a 'what happened' narrative.")
    const episodeId = id ?? mintId('ep_')
    const stored = await this.storeEpisode(space, {
      id: episodeId,
      whenNs,
      what,
      whereLocation,
      who,
      embedding: embeddingOr(embedding, 0.6),
      confidence: importance,
    })
    const shown = f32ToJson(stored.confidence).toFixed(2)
    return this.rememberReply(
      episodeId,
      stored.confidence,
      stored.observedAt,
      `Episodic memory stored with encoding confidence ${shown}`,
      `Episode '${episodeId}' successfully encoded with ${shown} confidence in memory space '${space}'.`,
    )
  }

  // ------------------------------------------------------------------ reads

  /** GET /api/v1/memories. Space: header, then ?space=. */
  async listMemories(ctx: RequestContext): Promise<Reply> {
    const q = ctx.query
    const tierText = q.string('tier') ?? 'hot'
    const offset = q.integer('offset') ?? 0
    const limit = Math.min(q.integer('limit') ?? 100, MAX_PAGE)
    const withEmbeddings = q.boolean('include_embeddings') ?? false
    if (!['hot', 'warm', 'cold', 'all'].includes(tierText)) {
      throw badRequest(`Invalid tier '${tierText}'. Use one of: hot, warm, cold, all.`)
    }
    const tier = tierText as Tier
    const s = await this.useSpace(pickSpace(header(ctx.req, 'x-memory-space'), q.string('space')))
    // Every live memory of this engine is in the hot tier; the warm and cold tiers exist and are empty.
    const entries = tier === 'hot' || tier === 'all' ? this.store.page(s.id, offset, limit) : []
    const memories = await Promise.all(
      entries.map(async (entry): Promise<MemorySummary> => {
        const e = await this.store.read(s, entry)
        const m: MemorySummary = {id: e.id, content: e.what, confidence: f32ToJson(e.encodingConfidence), timestamp: e.when}
        if (withEmbeddings) m.embedding = Array.from(e.embedding, f32ToJson)
        return m
      }),
    )
    const hot = s.live.size
    const body: MemoryList = {
      memories,
      count: memories.length,
      pagination: {offset, limit, returned: memories.length},
      tier_counts: {hot, warm: 0, cold: 0, total: hot},
    }
    return {status: 200, json: body}
  }

  /** GET /api/v1/memories/{id}. Space: header, then ?space=. */
  async getMemory(ctx: RequestContext): Promise<Reply> {
    const s = await this.useSpace(pickSpace(header(ctx.req, 'x-memory-space'), ctx.query.string('space')))
    const id = ctx.params.id
    const e = await this.store.getEpisode(s.id, id)
    if (!e) throw memoryNotFound(`Memory '${id}' not found in memory space '${s.id}'`)
    const body: MemoryRecord = {id: e.id, content: e.what, confidence: f32ToJson(e.encodingConfidence), timestamp: e.when, memory_type: 'episodic'}
    return {status: 200, json: body}
  }

  /** DELETE /api/v1/memories/{id}: Engram answers 200 "not_supported" and deletes nothing. */
  deleteMemory(ctx: RequestContext): Reply {
    return {
      status: 200,
      json: {
        status: 'not_supported',
        message: 'Deleting memories over HTTP is not supported; the memory was not deleted.',
        memory_id: ctx.params.id,
      },
    }
  }

  // ------------------------------------------------------------------ lifecycle

  shutdown(): Reply {
    return {
      status: 200,
      json: {status: 'shutdown_initiated', message: 'Server shutdown initiated: in-flight requests finish and the WAL is flushed before the process exits.'},
      headers: {connection: 'close'},
      after: this.onShutdown,
    }
  }
}

/** Percent-decodes a path parameter; a malformed escape is axum's plain-text 400. */
export function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw)
  } catch {
    throw new PlainError(400, `Invalid URL: Cannot parse \`${raw}\` to a \`String\``)
  }
}
