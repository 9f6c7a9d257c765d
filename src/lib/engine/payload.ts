/**
 * The payloads Engram writes into WAL records (bincode 1.3 `Episode` and `Memory`, the raw id of a
 * MemoryDelete, the u64 of a Checkpoint), with Engram's validation rules on decode: a 768-element
 * embedding and confidences in [0,1] (NaN rejected, -0.0 accepted).
 *
 * Field order is the Rust declaration order; changing it breaks compatibility with Engram.
 */
import {endianness} from 'node:os'

import {BincodeReader, BincodeWriter, DecodeError} from './bincode.js'
import {isRfc3339} from './datetime.js'

if (endianness() !== 'LE') throw new Error('engram-ops needs a little-endian CPU (embeddings are copied as raw f32 bytes)')

export const EMBEDDING_DIM = 768

export type StringMap = Array<[string, string]>

export interface ModelVersion {
  name: string
  version: string
  /** Rust `usize`, serialised as u64. */
  dimension: bigint
}

export interface EmbeddingProvenance {
  model: ModelVersion
  language: string | null
  /** Unix seconds. */
  createdAt: bigint
  qualityScore: number | null
  metadata: StringMap
}

export type DecayFunction =
  | {variant: 'Exponential'; tauHours: number}
  | {variant: 'PowerLaw'; beta: number}
  | {variant: 'TwoComponent'; consolidationThreshold: bigint}
  | {variant: 'Hybrid'; shortTermTau: number; longTermBeta: number; transitionPoint: bigint}

export const DECAY_VARIANTS = ['Exponential', 'PowerLaw', 'TwoComponent', 'Hybrid'] as const

/** An Engram episode. Datetimes are the exact RFC 3339 strings stored on disk. */
export interface Episode {
  id: string
  when: string
  whereLocation: string | null
  who: string[] | null
  what: string
  embedding: Float32Array
  embeddingProvenance: EmbeddingProvenance | null
  encodingConfidence: number
  vividnessConfidence: number
  reliabilityConfidence: number
  lastRecall: string
  recallCount: number
  decayRate: number
  decayFunction: DecayFunction | null
  metadata: StringMap
}

/** An Engram `Memory` (the payload of a MemoryUpdate record). */
export interface Memory {
  id: string
  embedding: Float32Array
  activation: number
  confidence: number
  lastAccess: string
  accessCount: bigint
  createdAt: string
  decayRate: number
  content: string | null
  embeddingProvenance: EmbeddingProvenance | null
}

// ---------------------------------------------------------------- decode

function readDateTime(r: BincodeReader, field: string): string {
  const text = r.str()
  if (!isRfc3339(text)) throw new DecodeError(`${field}: invalid RFC 3339 date-time ${JSON.stringify(text)}`)
  return text
}

function readConfidence(r: BincodeReader): number {
  const v = r.f32()
  if (!(v >= 0 && v <= 1)) throw new DecodeError(`Confidence value ${v} is outside valid range [0,1]`)
  return v
}

function readEmbedding(r: BincodeReader): Float32Array {
  const e = r.f32Array()
  if (e.length !== EMBEDDING_DIM) throw new DecodeError(`Expected array of length ${EMBEDDING_DIM}, got ${e.length}`)
  return e
}

function readProvenance(r: BincodeReader): EmbeddingProvenance {
  return {
    model: {name: r.str(), version: r.str(), dimension: r.u64()},
    language: r.option(() => r.str()),
    createdAt: r.u64(),
    qualityScore: r.option(() => r.f32()),
    metadata: r.stringMap(),
  }
}

function readDecayFunction(r: BincodeReader): DecayFunction {
  const v = r.u32()
  switch (v) {
    case 0:
      return {variant: 'Exponential', tauHours: r.f32()}
    case 1:
      return {variant: 'PowerLaw', beta: r.f32()}
    case 2:
      return {variant: 'TwoComponent', consolidationThreshold: r.u64()}
    case 3:
      return {variant: 'Hybrid', shortTermTau: r.f32(), longTermBeta: r.f32(), transitionPoint: r.u64()}
    default:
      throw new DecodeError(`invalid DecayFunction variant index ${v}`)
  }
}

function skipEmbedding(r: BincodeReader): number {
  const n = r.length(4)
  if (n !== EMBEDDING_DIM) throw new DecodeError(`Expected array of length ${EMBEDDING_DIM}, got ${n}`)
  r.offset += n * 4
  return n
}

/** Walks the Episode fields in declaration order; `embedding` decides how the vector is read. */
function readEpisode<E>(r: BincodeReader, embedding: (r: BincodeReader) => E): Omit<Episode, 'embedding'> & {embedding: E} {
  const id = r.str()
  const when = readDateTime(r, 'when')
  const whereLocation = r.option(() => r.str())
  const who = r.option(() => {
    const n = r.length(8)
    const names: string[] = []
    for (let i = 0; i < n; i++) names.push(r.str())
    return names
  })
  const what = r.str()
  const vector = embedding(r)
  const embeddingProvenance = r.option(() => readProvenance(r))
  const encodingConfidence = readConfidence(r)
  const vividnessConfidence = readConfidence(r)
  const reliabilityConfidence = readConfidence(r)
  const lastRecall = readDateTime(r, 'last_recall')
  const recallCount = r.u32()
  const decayRate = r.f32()
  const decayFunction = r.option(() => readDecayFunction(r))
  const metadata = r.stringMap()
  return {
    id,
    when,
    whereLocation,
    who,
    what,
    embedding: vector,
    embeddingProvenance,
    encodingConfidence,
    vividnessConfidence,
    reliabilityConfidence,
    lastRecall,
    recallCount,
    decayRate,
    decayFunction,
    metadata,
  }
}

/** Decodes a bincode Episode; trailing bytes are allowed, as in bincode 1.3. Throws DecodeError. */
export function decodeEpisode(payload: Buffer): Episode {
  return readEpisode(new BincodeReader(payload), readEmbedding)
}

/**
 * Decodes and validates every field exactly as decodeEpisode does, but only checks the embedding's
 * length instead of copying its 3 KB out: what scans and replay need (they keep ids, not vectors).
 */
export function decodeEpisodeMeta(payload: Buffer): Omit<Episode, 'embedding'> & {embedding: number} {
  return readEpisode(new BincodeReader(payload), skipEmbedding)
}

/** Reads only the id of an Episode payload (the first field), for fast scans. Throws DecodeError. */
export function decodeEpisodeId(payload: Buffer): string {
  return new BincodeReader(payload).str()
}

export function decodeMemory(payload: Buffer): Memory {
  const r = new BincodeReader(payload)
  return {
    id: r.str(),
    embedding: readEmbedding(r),
    activation: r.f32(),
    confidence: readConfidence(r),
    lastAccess: readDateTime(r, 'last_access'),
    accessCount: r.u64(),
    createdAt: readDateTime(r, 'created_at'),
    decayRate: r.f32(),
    content: r.option(() => r.str()),
    embeddingProvenance: r.option(() => readProvenance(r)),
  }
}

const strictUtf8 = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})

/** A MemoryDelete payload is the raw UTF-8 id, without a length prefix. */
export function decodeDeleteId(payload: Buffer): string {
  try {
    return strictUtf8.decode(payload)
  } catch {
    throw new DecodeError('invalid UTF-8 delete id')
  }
}

export function decodeCheckpoint(payload: Buffer): bigint {
  if (payload.length < 8) throw new DecodeError('io error: checkpoint payload shorter than 8 bytes')
  return payload.readBigUInt64LE(0)
}

// ---------------------------------------------------------------- encode

function writeProvenance(w: BincodeWriter, p: EmbeddingProvenance): void {
  w.str(p.model.name)
  w.str(p.model.version)
  w.u64(p.model.dimension)
  w.option(p.language, (v) => w.str(v))
  w.u64(p.createdAt)
  w.option(p.qualityScore, (v) => w.f32(v))
  w.stringMap(p.metadata)
}

function writeDecayFunction(w: BincodeWriter, d: DecayFunction): void {
  w.u32(DECAY_VARIANTS.indexOf(d.variant))
  switch (d.variant) {
    case 'Exponential':
      w.f32(d.tauHours)
      break
    case 'PowerLaw':
      w.f32(d.beta)
      break
    case 'TwoComponent':
      w.u64(d.consolidationThreshold)
      break
    case 'Hybrid':
      w.f32(d.shortTermTau)
      w.f32(d.longTermBeta)
      w.u64(d.transitionPoint)
      break
  }
}

export function encodeEpisode(e: Episode, w = new BincodeWriter(4096)): Buffer {
  w.str(e.id)
  w.str(e.when)
  w.option(e.whereLocation, (v) => w.str(v))
  w.option(e.who, (names) => {
    w.u64(names.length)
    for (const n of names) w.str(n)
  })
  w.str(e.what)
  w.f32Array(e.embedding)
  w.option(e.embeddingProvenance, (p) => writeProvenance(w, p))
  w.f32(e.encodingConfidence)
  w.f32(e.vividnessConfidence)
  w.f32(e.reliabilityConfidence)
  w.str(e.lastRecall)
  w.u32(e.recallCount)
  w.f32(e.decayRate)
  w.option(e.decayFunction, (d) => writeDecayFunction(w, d))
  w.stringMap(e.metadata)
  return w.result()
}

export function encodeMemory(m: Memory): Buffer {
  const w = new BincodeWriter(4096)
  w.str(m.id)
  w.f32Array(m.embedding)
  w.f32(m.activation)
  w.f32(m.confidence)
  w.str(m.lastAccess)
  w.u64(m.accessCount)
  w.str(m.createdAt)
  w.f32(m.decayRate)
  w.option(m.content, (v) => w.str(v))
  w.option(m.embeddingProvenance, (p) => writeProvenance(w, p))
  return w.result()
}

export function encodeDeleteId(id: string): Buffer {
  return Buffer.from(id, 'utf8')
}

export function encodeCheckpoint(value: bigint): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(value)
  return b
}
