/**
 * The wire shapes of the part of Engram's HTTP API that engram-ops uses (reference/engram-http-api.md).
 * Field names are Engram's (snake_case). Both the admin client and `engine serve` use these, so the
 * server we test against and the client we ship cannot drift apart silently.
 */

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy'

/** `GET /health` */
export interface HealthSummary {
  status: HealthStatus
  service: string
  version: string
  timestamp: string
}

/** One entry of `checks` in `GET /api/v1/system/health`. */
export interface HealthCheckResult {
  name: string
  type: string
  status: HealthStatus
  message: string
  latency_seconds: number
  consecutive_failures: number
  consecutive_successes: number
  last_success_seconds_ago: number
  last_failure_seconds_ago: number | null
  last_run_seconds_ago: number | null
}

export interface SpaceHealth {
  space: string
  memories: number
  /** Hard-coded 0 by Engram. */
  pressure: number
  /** Hard-coded 0 by Engram. */
  wal_lag_ms: number
  /** Hard-coded 0 by Engram. */
  consolidation_rate: number
}

/** `GET /api/v1/system/health` (Engram's HealthResponse). */
export interface SystemHealth {
  status: HealthStatus
  timestamp: string
  checks: HealthCheckResult[]
  spaces: SpaceHealth[]
  cluster: Record<string, unknown> | null
}

export interface SpaceDescriptor {
  id: string
  persistence_root: string
  created_at: string
}

/** `POST /api/v1/memories/remember` body (flat, not the nested shape the docs describe). */
export interface RememberMemoryRequest {
  id?: string
  content: string
  /** 768 floats; Engram defaults to [0.5; 768]. */
  embedding?: number[]
  confidence?: number
  confidence_reasoning?: string
  tags?: string[]
  memory_type?: 'semantic' | 'episodic' | 'procedural' | string
  /** RFC 3339 observation time; default now. */
  timestamp?: string
  auto_link?: boolean
  link_threshold?: number
  memory_space_id?: string
}

/** `POST /api/v1/episodes/remember` body. */
export interface RememberEpisodeRequest {
  id?: string
  when: string
  what: string
  where_location?: string
  who?: string[]
  why?: string
  how?: string
  /** 768 floats; Engram defaults to [0.6; 768]. */
  embedding?: number[]
  emotional_valence?: number
  /** Stored as the encoding confidence; default 0.5. */
  importance?: number
  auto_link?: boolean
  memory_space_id?: string
}

export interface ConfidenceInfo {
  value: number
  category: 'High' | 'Medium' | 'Low'
  reasoning: string
}

export interface RememberResponse {
  memory_id: string
  storage_confidence: ConfidenceInfo
  consolidation_state: string
  observed_at: string
  stored_at: string
  links: {consolidation: string}
  auto_links: Array<{target_memory_id: string; similarity_score: number; link_reason: string}>
  system_message: string
}

export type Tier = 'hot' | 'warm' | 'cold' | 'all'

export interface MemorySummary {
  id: string
  content: string
  confidence: number
  timestamp: string
  /** Only with include_embeddings=true. */
  embedding?: number[]
}

/** `GET /api/v1/memories` */
export interface MemoryList {
  memories: MemorySummary[]
  count: number
  pagination: {offset: number; limit: number; returned: number}
  tier_counts: {hot: number; warm: number; cold: number; total: number}
}

/** `GET /api/v1/memories/{id}` */
export interface MemoryRecord {
  id: string
  content: string
  confidence: number
  timestamp: string
  memory_type: string
}

export interface ShutdownResponse {
  status: 'shutdown_initiated'
  message: string
}

/** Engram's error envelope (api.rs ApiError rendering). */
export interface ErrorEnvelope {
  error: {code: string; message: string; educational_context: string; cognitive_guidance: string}
  documentation: {api_guide: string; memory_concepts: string; examples: string}
}

/** Engram's credential shape: `engram_key_<24 alnum key id>_<32 alnum secret>`. */
export const API_KEY_PATTERN = /^engram_key_[A-Za-z0-9]{24}_[A-Za-z0-9]{32}$/

export const SPACE_HEADER = 'X-Memory-Space'
/** Only Engram's auth middleware reads this one (space scoping); it does not select the space. */
export const SPACE_SCOPE_HEADER = 'X-Memory-Space-Id'
