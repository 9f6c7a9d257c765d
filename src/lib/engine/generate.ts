/**
 * Deterministic, realistic Engram data for tests, benchmarks and the demo: the same options give the
 * same bytes. Embeddings come from a proper PRNG (xoshiro128**), are unit-length and never repeat, so
 * they are as incompressible as a real model's; content is sentence-like; metadata, participants,
 * places, provenance and decay functions vary the way they do in production payloads.
 */
import {formatRfc3339} from './datetime.js'
import {listWalFiles, walFileCreatedSecs} from './layout.js'
import {encodeEpisode, EMBEDDING_DIM, type Episode} from './payload.js'
import {BincodeWriter} from './bincode.js'
import {WalFileReader} from './reader.js'
import {EntryType} from './record.js'
import {ensureSpaceDirs, WalWriter} from './writer.js'
import {join} from 'node:path'

/** xoshiro128** seeded through splitmix32: fast, good statistical quality, reproducible. */
export class Prng {
  private s0: number
  private s1: number
  private s2: number
  private s3: number
  constructor(seed: number) {
    let x = seed >>> 0
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0
      let z = x
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.s0 = next()
    this.s1 = next()
    this.s2 = next()
    this.s3 = next()
  }

  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0
    const t = this.s1 << 9
    this.s2 ^= this.s0
    this.s3 ^= this.s1
    this.s1 ^= this.s2
    this.s0 ^= this.s3
    this.s2 ^= t
    this.s3 = rotl(this.s3, 11)
    return result
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296
  }

  int(maxExclusive: number): number {
    return Math.floor(this.float() * maxExclusive)
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}

const PEOPLE = ['Priya Raman', 'Mateo Rossi', 'Carmen Díaz', 'Hiro Tanaka', 'Amara Okafor', 'Lena Fischer', 'Noah Cohen', 'Sofia Lindqvist', 'Kwame Mensah', 'Yuki Sato', 'the on-call engineer', 'the database admin']
const VERBS = ['reviewed', 'benchmarked', 'escalated', 'fixed', 'summarised', 'rolled back', 'migrated', 'documented', 'approved', 'questioned', 'rescheduled', 'profiled']
const OBJECTS = ['the backup restore drill', 'the onboarding checklist', 'a config change', 'the quarterly roadmap', 'the storage migration budget', 'the flaky integration test', 'the incident timeline', 'the capacity forecast', 'a customer escalation', 'the release notes', 'the index rebuild', 'the retention policy']
const CONTEXTS = ['during the weekly sync', 'before the maintenance window', 'after the outage review', 'over lunch', 'in the design review', 'on the late shift', 'while pairing', 'in a hallway chat']
const PLACES = ['the lab', 'room 4.12', 'the Berlin office', 'a video call', 'the data center', 'the cafeteria', '']
const MODELS = [
  {name: 'BAAI/bge-base-en-v1.5', version: 'a5beb1e3e68b9ab74eb54cfd186867f64f240e1a'},
  {name: 'sentence-transformers/all-mpnet-base-v2', version: '84f2bcc00d77236f9e89c8a360a00fb1139bf47d'},
]
const META_KEYS = ['agent', 'lang_hint', 'source', 'ticket', 'channel', 'reconsolidated_at']

export interface GeneratedEpisode {
  episode: Episode
  timestampNs: bigint
}

/** Builds episode `n` of a stream. Pure function of (prng state, n, times). */
export function makeEpisode(rng: Prng, id: string, timestampNs: bigint): Episode {
  const sentence = () => `${rng.pick(PEOPLE)} ${rng.pick(VERBS)} ${rng.pick(OBJECTS)} ${rng.pick(CONTEXTS)}`
  let what = sentence()
  const clauses = rng.int(3)
  for (let i = 0; i < clauses; i++) what += `; then ${sentence()}`
  what += '.'
  const embedding = new Float32Array(EMBEDDING_DIM)
  let norm = 0
  for (let i = 0; i < EMBEDDING_DIM; i++) {
    // Sum of two uniforms: a bell-ish distribution like real embedding components.
    const v = rng.float() + rng.float() - 1
    embedding[i] = v
    norm += v * v
  }
  const scale = 1 / Math.sqrt(norm)
  for (let i = 0; i < EMBEDDING_DIM; i++) embedding[i] *= scale
  const whenNs = timestampNs - BigInt(rng.int(30 * 86_400)) * 1_000_000_000n - BigInt(rng.int(1000)) * 1_000_000n
  const who = rng.int(4) === 0 ? null : Array.from({length: 1 + rng.int(3)}, () => rng.pick(PEOPLE))
  const metadata: Array<[string, string]> = []
  const metaCount = rng.int(4)
  for (let i = 0; i < metaCount; i++) metadata.push([META_KEYS[(i + rng.int(2)) % META_KEYS.length] + (i > 1 ? `_${i}` : ''), `v${rng.u32().toString(36)}`])
  const confidence = Math.fround(0.5 + rng.int(50) / 100)
  const model = rng.pick(MODELS)
  const decayRoll = rng.int(5)
  return {
    id,
    when: formatRfc3339(whenNs),
    whereLocation: rng.int(3) === 0 ? rng.pick(PLACES) : null,
    who,
    what,
    embedding,
    embeddingProvenance:
      rng.int(2) === 0
        ? {
            model: {...model, dimension: 768n},
            language: rng.int(4) === 0 ? null : 'en',
            createdAt: timestampNs / 1_000_000_000n,
            qualityScore: rng.int(3) === 0 ? null : Math.fround(0.8 + rng.int(20) / 100),
            metadata: [],
          }
        : null,
    encodingConfidence: confidence,
    vividnessConfidence: confidence,
    reliabilityConfidence: confidence,
    lastRecall: formatRfc3339(timestampNs),
    recallCount: rng.int(10),
    decayRate: Math.fround(0.05),
    decayFunction:
      decayRoll === 0
        ? {variant: 'Exponential', tauHours: Math.fround(1 + rng.int(48))}
        : decayRoll === 1
          ? {variant: 'PowerLaw', beta: Math.fround(0.2 + rng.int(5) / 10)}
          : null,
    metadata,
  }
}

export interface GenerateOptions {
  root: string
  spaces: string[]
  /** Episodes per space (ignored when `bytesPerSpace` is set). */
  episodes: number
  /** Write about this many WAL bytes per space instead of a fixed count. */
  bytesPerSpace?: number
  seed: number
  /** Start of the timestamp window, ns since the epoch; also the WAL file name (writer creation). */
  startNs: bigint
  /** Length of the window the records' timestamps spread over, ns. */
  windowNs: bigint
  /** Append to each space's newest WAL file, continuing its sequence, instead of a new file. */
  append?: boolean
  fsync?: boolean
  signal?: AbortSignal
  onProgress?: (bytes: number) => void
}

export interface GenerateResult {
  spaces: Array<{space: string; file: string; episodes: number; bytes: number; firstSequence: string; lastSequence: string}>
  episodes: number
  bytes: number
}

const AVERAGE_RECORD_BYTES = 3450
const BATCH = 512

function seedFor(seed: number, space: string, startNs: bigint): number {
  let h = seed >>> 0
  for (const ch of `${space}@${startNs}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0
  return h
}

export async function generateData(o: GenerateOptions): Promise<GenerateResult> {
  const result: GenerateResult = {spaces: [], episodes: 0, bytes: 0}
  const startSecs = o.startNs / 1_000_000_000n
  for (const space of o.spaces) {
    const spacePath = join(o.root, space)
    await ensureSpaceDirs(spacePath)
    let createdAtSecs = startSecs
    let firstSequence = 0n
    if (o.append) {
      const existing = await listWalFiles(join(spacePath, 'wal'))
      const newest = existing.at(-1)
      if (newest) {
        createdAtSecs = walFileCreatedSecs(newest.name) ?? startSecs
        const reader = new WalFileReader(newest.path)
        let last = -1n
        for await (const r of reader.records()) last = r.header.sequence
        firstSequence = last + 1n
      }
    }
    const count = o.bytesPerSpace ? Math.max(1, Math.ceil(o.bytesPerSpace / AVERAGE_RECORD_BYTES)) : o.episodes
    const rng = new Prng(seedFor(o.seed, space, o.startNs))
    const writer = await WalWriter.open(join(spacePath, 'wal'), {createdAtSecs, firstSequence, fsync: o.fsync ?? true})
    const step = count > 1 ? o.windowNs / BigInt(count) : 0n
    const bw = new BincodeWriter(8192)
    const startSize = writer.size
    let lastSeq = firstSequence
    try {
      for (let i = 0; i < count; i += BATCH) {
        o.signal?.throwIfAborted()
        const batch = []
        for (let j = i; j < Math.min(count, i + BATCH); j++) {
          const jitter = step > 2n ? BigInt(rng.int(Number(step / 2n > 1_000_000_000n ? 1_000_000_000n : step / 2n))) : 0n
          const ts = o.startNs + step * BigInt(j) + jitter
          bw.offset = 0
          const payload = Buffer.from(encodeEpisode(makeEpisode(rng, `${space}-${startSecs.toString(36)}-${j}`, ts), bw))
          batch.push({entryType: EntryType.EpisodeStore, payload, timestampNs: ts})
        }
        const written = await writer.append(batch)
        lastSeq = written.at(-1)!.sequence
        o.onProgress?.(writer.size - startSize)
      }
    } finally {
      await writer.close()
    }
    const bytes = writer.size - startSize
    result.spaces.push({space, file: writer.name, episodes: count, bytes, firstSequence: String(firstSequence), lastSequence: String(lastSeq)})
    result.episodes += count
    result.bytes += bytes
  }
  return result
}

