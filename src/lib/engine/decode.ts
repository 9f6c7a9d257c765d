/** Decoding a record's payload by entry type, as Engram's replay does. */
import {DecodeError} from './bincode.js'
import {
  decodeCheckpoint,
  decodeDeleteId,
  decodeEpisode,
  decodeEpisodeMeta,
  decodeMemory,
  type Episode,
  type Memory,
} from './payload.js'
import {EntryType} from './record.js'

export type DecodedPayload =
  | {kind: 'episode'; episode: Episode}
  | {kind: 'memory'; memory: Memory}
  | {kind: 'delete'; id: string}
  | {kind: 'checkpoint'; value: bigint}
  /** Consolidation and CompactionMarker carry no payload Engram reads. */
  | {kind: 'not_applicable'}
  | {kind: 'error'; error: string}

export type EpisodeMeta = ReturnType<typeof decodeEpisodeMeta>

type Decoded<E> = Exclude<DecodedPayload, {kind: 'episode'}> | {kind: 'episode'; episode: E}

/** Like DecodedPayload, but episodes come without their embedding vector (validated, not copied). */
export type DecodedMeta = Decoded<EpisodeMeta>

export function decodePayloadMeta(entryType: number, payload: Buffer): DecodedMeta {
  return decodeWith(entryType, payload, decodeEpisodeMeta)
}

export function decodePayload(entryType: number, payload: Buffer): DecodedPayload {
  return decodeWith(entryType, payload, decodeEpisode)
}

function decodeWith<E>(entryType: number, payload: Buffer, episode: (p: Buffer) => E): Decoded<E> {
  try {
    switch (entryType) {
      case EntryType.MemoryUpdate:
        return {kind: 'memory', memory: decodeMemory(payload)}
      case EntryType.MemoryDelete:
        return {kind: 'delete', id: decodeDeleteId(payload)}
      case EntryType.Checkpoint:
        return {kind: 'checkpoint', value: decodeCheckpoint(payload)}
      case EntryType.Consolidation:
      case EntryType.CompactionMarker:
        return {kind: 'not_applicable'}
      default:
        // EpisodeStore, and every unknown type: Engram replays them as EpisodeStore.
        return {kind: 'episode', episode: episode(payload)}
    }
  } catch (error) {
    if (error instanceof DecodeError || error instanceof RangeError) return {kind: 'error', error: error.message}
    throw error
  }
}
