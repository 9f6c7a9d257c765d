/**
 * WAL record framing: a packed 64-byte little-endian header followed by the payload.
 *
 *   0 magic u32 0xDEADBEEF | 4 sequence u64 | 12 timestamp_ns u64 | 20 entry_type u32
 *  24 payload_size u32 | 28 payload_crc u32 | 32 header_crc u32 | 36 reserved[20] | 56 tail[8]
 *
 * header_crc = CRC-32C(bytes [0,32) ‖ bytes [36,56)); payload_crc = CRC-32C(payload).
 */
import {crc32c, crc32cRange} from './crc32c.js'

export const HEADER_SIZE = 64
export const WAL_MAGIC = 0xdeadbeef

export const EntryType = {
  EpisodeStore: 1,
  MemoryUpdate: 2,
  MemoryDelete: 3,
  Consolidation: 4,
  Checkpoint: 5,
  CompactionMarker: 6,
} as const

const ENTRY_TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(EntryType).map(([k, v]) => [v, k]))

/** The name Engram gives an entry type ("Unknown" for 0 and values above 6). */
export function entryTypeName(type: number): string {
  return ENTRY_TYPE_NAMES[type] ?? 'Unknown'
}

/** True for the entry types Engram replays as an episode: EpisodeStore and every unknown type. */
export function isEpisodeType(type: number): boolean {
  return !(type in ENTRY_TYPE_NAMES) || type === EntryType.EpisodeStore
}

/** The entry type Engram replays a record as (unknown types decode as EpisodeStore). */
export function replayedAs(type: number): string {
  return isEpisodeType(type) ? 'EpisodeStore' : ENTRY_TYPE_NAMES[type]
}

export function entryTypeFromName(name: string): number | undefined {
  const key = Object.keys(EntryType).find((k) => k.toLowerCase() === name.toLowerCase())
  return key ? EntryType[key as keyof typeof EntryType] : undefined
}

export interface RecordHeader {
  magic: number
  sequence: bigint
  timestampNs: bigint
  entryType: number
  payloadSize: number
  payloadCrc: number
  headerCrc: number
}

export function decodeHeader(buf: Buffer, at: number): RecordHeader {
  return {
    magic: buf.readUInt32LE(at),
    sequence: buf.readBigUInt64LE(at + 4),
    timestampNs: buf.readBigUInt64LE(at + 12),
    entryType: buf.readUInt32LE(at + 20),
    payloadSize: buf.readUInt32LE(at + 24),
    payloadCrc: buf.readUInt32LE(at + 28),
    headerCrc: buf.readUInt32LE(at + 32),
  }
}

/** CRC-32C over the 52 header bytes Engram covers: [0,32) then the reserved [36,56) (in JavaScript: see crc32c.ts). */
export function computeHeaderCrc(buf: Buffer, at: number): number {
  return crc32cRange(buf, at + 36, at + 56, crc32cRange(buf, at, at + 32))
}

/** Why a header is not valid, or null when it is (the same checks as Engram's reader). */
export function headerError(h: RecordHeader, computedCrc: number): string | null {
  if (h.magic !== WAL_MAGIC) return `bad magic 0x${h.magic.toString(16).padStart(8, '0')}`
  if (h.headerCrc !== computedCrc) {
    const hex = (v: number) => `0x${v.toString(16).padStart(8, '0')}`
    return `header_crc mismatch: stored ${hex(h.headerCrc)}, computed ${hex(computedCrc)}`
  }
  return null
}

export interface RecordInput {
  sequence: bigint
  timestampNs: bigint
  entryType: number
  payload: Uint8Array
}

/** Writes a complete record (header + payload) into `out` at `at`; returns the bytes written. */
export function writeRecord(out: Buffer, at: number, r: RecordInput): number {
  out.fill(0, at, at + HEADER_SIZE)
  out.writeUInt32LE(WAL_MAGIC, at)
  out.writeBigUInt64LE(r.sequence, at + 4)
  out.writeBigUInt64LE(r.timestampNs, at + 12)
  out.writeUInt32LE(r.entryType, at + 20)
  out.writeUInt32LE(r.payload.length, at + 24)
  out.writeUInt32LE(crc32c(r.payload), at + 28)
  out.writeUInt32LE(computeHeaderCrc(out, at), at + 32)
  out.set(r.payload, at + HEADER_SIZE)
  return HEADER_SIZE + r.payload.length
}

export function encodeRecord(r: RecordInput): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + r.payload.length)
  writeRecord(out, 0, r)
  return out
}
