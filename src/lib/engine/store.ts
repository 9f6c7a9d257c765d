/**
 * An open data directory: every memory space replayed as Engram would, an in-memory index of live
 * episodes (id → record location; payloads stay on disk and are read back on demand), and one
 * group-commit WAL writer per space for new records. This is what `engine serve` runs on.
 *
 * Differences from Engram, on purpose: no startup compaction (it rewrites timestamps and can orphan
 * the live writer, storage format §6.3), no semantic dedup, a WAL file is created on the first write
 * rather than at every start, and a write is acknowledged only once its batch is fsynced.
 */
import {open, truncate, type FileHandle} from 'node:fs/promises'
import {join} from 'node:path'

import {IntegrityError, UsageError} from '../errors.js'
import {decodeEpisode, encodeDeleteId, encodeEpisode, type Episode} from './payload.js'
import {discoverSpaces, isValidSpaceId, type SkippedEntry, type SpaceDir} from './layout.js'
import {readPayloadAt} from './reader.js'
import {EntryType} from './record.js'
import {type LiveEntry, replaySpace, type SpaceReplay} from './replay.js'
import {ensureSpaceDirs, GroupCommitWriter, WalWriter} from './writer.js'

export interface SpaceState {
  id: string
  path: string
  createdAt: Date
  live: Map<string, LiveEntry>
  /** WAL file name → path, for reading payloads back. */
  files: Map<string, string>
  writer: GroupCommitWriter | null
  replay: SpaceReplay | null
}

export interface OpenStoreOptions {
  /** Create the `default` space if it does not exist (Engram always has it). */
  createDefault?: boolean
  /** Truncate torn tails instead of refusing to open (Engram refuses). */
  truncateTorn?: boolean
}

export class EngineStore {
  private readonly spaces = new Map<string, SpaceState>()
  /** In-flight creations, so concurrent first requests for a space or its writer share one. */
  private readonly creating = new Map<string, Promise<SpaceState>>()
  private readonly opening = new Map<SpaceState, Promise<GroupCommitWriter>>()
  private readonly handles = new Map<string, Promise<FileHandle>>()
  skipped: SkippedEntry[] = []
  truncated: Array<{space: string; file: string; offset: number}> = []

  private constructor(readonly root: string) {}

  static async open(root: string, o: OpenStoreOptions = {}): Promise<EngineStore> {
    const store = new EngineStore(root)
    const d = await discoverSpaces(root)
    store.skipped = d.skipped
    for (const sp of d.spaces) await store.load(sp, o.truncateTorn ?? false)
    if ((o.createDefault ?? true) && !store.spaces.has('default')) await store.space('default')
    return store
  }

  private async load(sp: SpaceDir, truncateTorn: boolean): Promise<SpaceState> {
    let r = await replaySpace(sp)
    if (r.engram.outcome === 'error') {
      const {file, offset} = r.engram
      if (!truncateTorn) {
        throw new IntegrityError(`space ${sp.id}: ${file} ends in a torn record at offset ${offset}; Engram refuses to open this space`, {
          code: 'TORN_WAL',
          subject: join(sp.walDir, file),
          suggestion: 'Back up the data directory, then start again with --truncate-torn to cut the torn tails.',
          details: {space: sp.id, file, offset},
        })
      }
      for (const f of r.files) {
        if (f.end.kind === 'torn_payload') {
          await truncate(f.path, f.end.truncateTo)
          this.truncated.push({space: sp.id, file: f.name, offset: f.end.truncateTo})
        }
      }
      r = await replaySpace(sp)
    }
    const state: SpaceState = {
      id: sp.id,
      path: sp.path,
      createdAt: new Date(),
      live: r.live,
      files: new Map(r.files.map((f) => [f.name, f.path])),
      writer: null,
      replay: r,
    }
    this.spaces.set(sp.id, state)
    return state
  }

  /** Space ids, sorted. */
  spaceIds(): string[] {
    return [...this.spaces.keys()].sort()
  }

  get(id: string): SpaceState | undefined {
    return this.spaces.get(id)
  }

  /** Gets a space, creating its directories if needed (Engram's create_or_get). */
  async space(id: string): Promise<SpaceState> {
    const existing = this.spaces.get(id)
    if (existing) return existing
    let pending = this.creating.get(id)
    if (!pending) {
      pending = this.createSpace(id).finally(() => this.creating.delete(id))
      this.creating.set(id, pending)
    }
    return pending
  }

  private async createSpace(id: string): Promise<SpaceState> {
    if (!isValidSpaceId(id) || id !== id.trim()) {
      throw new UsageError(`invalid memory space id ${JSON.stringify(id)}`, {
        code: 'BAD_SPACE_ID',
        suggestion: 'Space ids are 3-64 characters of a-z, 0-9, _ and -.',
      })
    }
    const path = join(this.root, id)
    await ensureSpaceDirs(path)
    const state: SpaceState = {id, path, createdAt: new Date(), live: new Map(), files: new Map(), writer: null, replay: null}
    this.spaces.set(id, state)
    return state
  }

  private async writerFor(s: SpaceState): Promise<GroupCommitWriter> {
    if (s.writer) return s.writer
    let pending = this.opening.get(s)
    if (!pending) {
      pending = WalWriter.open(join(s.path, 'wal'))
        .then((w) => {
          s.files.set(w.name, w.path)
          s.writer = new GroupCommitWriter(w)
          return s.writer
        })
        .finally(() => this.opening.delete(s))
      this.opening.set(s, pending)
    }
    return pending
  }

  /** Appends an EpisodeStore record; once durable, the id points at it (Engram's runtime is last-wins). */
  async remember(spaceId: string, episode: Episode): Promise<LiveEntry> {
    const s = await this.space(spaceId)
    const w = await this.writerFor(s)
    const rec = await w.append({entryType: EntryType.EpisodeStore, payload: Buffer.from(encodeEpisode(episode))})
    const entry: LiveEntry = {id: episode.id, file: rec.file, fileIndex: -1, offset: rec.offset, sequence: rec.sequence, timestampNs: rec.timestampNs, payloadSize: rec.payloadSize}
    s.live.delete(episode.id)
    s.live.set(episode.id, entry)
    return entry
  }

  /** Appends a MemoryDelete record and removes the id. Returns whether it was live. */
  async forget(spaceId: string, id: string): Promise<boolean> {
    const s = await this.space(spaceId)
    const w = await this.writerFor(s)
    await w.append({entryType: EntryType.MemoryDelete, payload: encodeDeleteId(id)})
    return s.live.delete(id)
  }

  private handle(path: string): Promise<FileHandle> {
    let h = this.handles.get(path)
    if (!h) {
      h = open(path, 'r')
      this.handles.set(path, h)
    }
    return h
  }

  /** Reads a live episode back from its WAL record. */
  async read(s: SpaceState, entry: LiveEntry): Promise<Episode> {
    const path = s.files.get(entry.file)!
    const payload = await readPayloadAt(await this.handle(path), entry.offset, entry.payloadSize)
    return decodeEpisode(payload)
  }

  async getEpisode(spaceId: string, id: string): Promise<Episode | null> {
    const s = this.spaces.get(spaceId)
    const entry = s?.live.get(id)
    return s && entry ? this.read(s, entry) : null
  }

  /** Live entries of a space in replay (then write) order, paged. */
  page(spaceId: string, offset: number, limit: number): LiveEntry[] {
    const s = this.spaces.get(spaceId)
    if (!s) return []
    const out: LiveEntry[] = []
    let i = 0
    for (const e of s.live.values()) {
      if (i++ < offset) continue
      if (out.length >= limit) break
      out.push(e)
    }
    return out
  }

  /** Waits until every acknowledged write is on disk. */
  async flush(): Promise<void> {
    for (const s of this.spaces.values()) await s.writer?.flush()
  }

  async close(): Promise<void> {
    for (const s of this.spaces.values()) {
      await s.writer?.close()
      s.writer = null
    }
    for (const h of this.handles.values()) await (await h.catch(() => null))?.close()
    this.handles.clear()
  }
}
