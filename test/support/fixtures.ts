import {blake3 as blake3Digest} from '@napi-rs/blake-hash'
import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import type {DecayFunction, EmbeddingProvenance, Episode, Memory} from '../../src/lib/engine/payload.js'

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const fixturesRoot = join(repoRoot, 'test', 'fixtures', 'engram-wal')
export const FIXTURE_SETS = ['basic', 'multi', 'damaged', 'large'] as const

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any

export function loadExpected(set: string): Json {
  return JSON.parse(readFileSync(join(fixturesRoot, set, 'expected.json'), 'utf8'))
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** BLAKE3 straight from the library (not through src/lib/digest.ts), the default hash of a backup. */
export function blake3(data: Uint8Array | string): string {
  return blake3Digest(data).toString('hex')
}

function embeddingJson(e: Float32Array): Json {
  let sum = 0
  for (const v of e) sum += v
  return {
    length: e.length,
    first4: Array.from(e.subarray(0, 4)),
    sum,
    sha256: sha256(new Uint8Array(e.buffer, e.byteOffset, e.byteLength)),
  }
}

function provenanceJson(p: EmbeddingProvenance | null): Json {
  if (!p) return null
  return {
    model: {name: p.model.name, version: p.model.version, dimension: String(p.model.dimension)},
    language: p.language,
    created_at: String(p.createdAt),
    quality_score: p.qualityScore,
    metadata: p.metadata,
  }
}

function decayJson(d: DecayFunction | null): Json {
  if (!d) return null
  const index = ['Exponential', 'PowerLaw', 'TwoComponent', 'Hybrid'].indexOf(d.variant)
  switch (d.variant) {
    case 'Exponential':
      return {variant: d.variant, variant_index: index, tau_hours: d.tauHours}
    case 'PowerLaw':
      return {variant: d.variant, variant_index: index, beta: d.beta}
    case 'TwoComponent':
      return {variant: d.variant, variant_index: index, consolidation_threshold: String(d.consolidationThreshold)}
    case 'Hybrid':
      return {
        variant: d.variant,
        variant_index: index,
        short_term_tau: d.shortTermTau,
        long_term_beta: d.longTermBeta,
        transition_point: String(d.transitionPoint),
      }
  }
}

/** Our decoded Episode in the shape of the fixtures' expected.json (without the *_unix_ns fields). */
export function episodeJson(e: Episode): Json {
  return {
    id: e.id,
    when: e.when,
    where_location: e.whereLocation,
    who: e.who,
    what: e.what,
    embedding: embeddingJson(e.embedding),
    embedding_provenance: provenanceJson(e.embeddingProvenance),
    encoding_confidence: e.encodingConfidence,
    vividness_confidence: e.vividnessConfidence,
    reliability_confidence: e.reliabilityConfidence,
    last_recall: e.lastRecall,
    recall_count: e.recallCount,
    decay_rate: e.decayRate,
    decay_function: decayJson(e.decayFunction),
    metadata: e.metadata,
  }
}

export function memoryJson(m: Memory): Json {
  return {
    id: m.id,
    embedding: embeddingJson(m.embedding),
    activation: m.activation,
    confidence: m.confidence,
    last_access: m.lastAccess,
    access_count: String(m.accessCount),
    created_at: m.createdAt,
    decay_rate: m.decayRate,
    content: m.content,
    embedding_provenance: provenanceJson(m.embeddingProvenance),
  }
}

/** expected.json episodes carry *_unix_ns beside each datetime; strip them for a structural compare. */
export function withoutUnixNs(o: Json): Json {
  if (Array.isArray(o)) return o.map(withoutUnixNs)
  if (o && typeof o === 'object') {
    return Object.fromEntries(Object.entries(o).filter(([k]) => !k.endsWith('_unix_ns')).map(([k, v]) => [k, withoutUnixNs(v)]))
  }
  return o
}
