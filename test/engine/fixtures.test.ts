/**
 * Golden fixtures written by Engram's real serializers: every record must decode exactly as
 * expected.json says, every valid record must re-encode to the file's bytes, and replay must reach
 * the same state.
 */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {parseRfc3339} from '../../src/lib/engine/datetime.js'
import {decodePayload} from '../../src/lib/engine/decode.js'
import {discoverSpaces} from '../../src/lib/engine/layout.js'
import {encodeCheckpoint, encodeDeleteId, encodeEpisode, encodeMemory} from '../../src/lib/engine/payload.js'
import {WalFileReader} from '../../src/lib/engine/reader.js'
import {encodeRecord, entryTypeName, replayedAs} from '../../src/lib/engine/record.js'
import {replaySpace} from '../../src/lib/engine/replay.js'
import {episodeJson, FIXTURE_SETS, fixturesRoot, type Json, loadExpected, memoryJson, sha256, withoutUnixNs} from '../support/fixtures.js'

function endJson(end: Json): Json {
  switch (end.kind) {
    case 'eof':
      return {kind: 'eof', offset: end.offset}
    case 'partial_header':
      return {kind: 'partial_header', offset: end.offset, bytes: end.bytes}
    case 'bad_header':
      return {kind: 'bad_header', offset: end.offset, bytes_discarded: end.bytesDiscarded}
    case 'torn_payload':
      return {kind: 'torn_payload', offset: end.offset, payload_bytes_present: end.payloadBytesPresent, truncate_to: end.truncateTo}
  }
}

for (const set of FIXTURE_SETS) {
  describe(`fixture set ${set}`, () => {
    const expected = loadExpected(set)

    it('discovers exactly the expected spaces', async () => {
      const d = await discoverSpaces(join(fixturesRoot, set))
      expect(d.spaces.map((s) => s.id).sort()).toEqual(Object.keys(expected.spaces).sort())
      expect(d.skipped).toEqual([])
    })

    for (const [spaceId, space] of Object.entries<Json>(expected.spaces)) {
      for (const file of space.files) {
        it(`${spaceId}/${file.name}: records, offsets, CRCs, validity and decoded fields`, async () => {
          const path = join(fixturesRoot, set, file.path)
          const bytes = readFileSync(path)
          expect(bytes.length).toBe(file.size)
          expect(sha256(bytes)).toBe(file.sha256)

          const reader = new WalFileReader(path)
          const byOffset = new Map<number, Json>((file.records ?? file.sample_records).map((r: Json) => [r.offset, r]))
          let count = 0
          const ids: string[] = []
          let payloadBytes = 0
          let matched = 0
          for await (const rec of reader.records()) {
            count++
            payloadBytes += rec.header.payloadSize
            const decoded = rec.validity === 'ok' ? decodePayload(rec.header.entryType, rec.payload!) : null
            if (decoded?.kind === 'episode') ids.push(decoded.episode.id)
            const exp = byOffset.get(rec.offset)
            if (!exp) continue
            matched++
            expect(rec.index).toBe(exp.index)
            expect(rec.validity).toBe(exp.validity)
            expect(rec.header.magic).toBe(exp.magic)
            expect(String(rec.header.sequence)).toBe(exp.sequence)
            expect(String(rec.header.timestampNs)).toBe(exp.timestamp_ns)
            expect(rec.header.entryType).toBe(exp.entry_type)
            expect(entryTypeName(rec.header.entryType)).toBe(exp.entry_type_name)
            expect(replayedAs(rec.header.entryType)).toBe(exp.replayed_as)
            expect(rec.header.payloadSize).toBe(exp.payload_size)
            expect(rec.header.payloadCrc).toBe(exp.payload_crc)
            expect(rec.header.headerCrc).toBe(exp.header_crc)
            expect(rec.recordSize).toBe(exp.record_size)
            expect(sha256(rec.payload!)).toBe(exp.payload_sha256)
            if (exp.validity === 'bad_payload_crc') {
              expect(rec.computedPayloadCrc).toBe(exp.computed_payload_crc)
              continue
            }
            // Decoded fields.
            if (exp.decode === 'not_applicable') expect(decoded!.kind).toBe('not_applicable')
            if (exp.decode === 'error') expect(decoded!.kind).toBe('error')
            if (exp.decode === 'ok') {
              if (exp.episode) {
                expect(decoded!.kind).toBe('episode')
                const ep = (decoded as Json).episode
                expect(episodeJson(ep)).toEqual(withoutUnixNs(exp.episode))
                expect(String(parseRfc3339(ep.when))).toBe(exp.episode.when_unix_ns)
                expect(String(parseRfc3339(ep.lastRecall))).toBe(exp.episode.last_recall_unix_ns)
              }
              if (exp.memory) expect(memoryJson((decoded as Json).memory)).toEqual(exp.memory)
              if (exp.delete_id !== undefined) expect((decoded as Json).id).toBe(exp.delete_id)
              if (exp.checkpoint_value !== undefined) expect(String((decoded as Json).value)).toBe(exp.checkpoint_value)
            }
            // Re-encoding the decoded record reproduces the file's bytes exactly.
            if (decoded && decoded.kind !== 'error') {
              const payload =
                decoded.kind === 'episode'
                  ? encodeEpisode(decoded.episode)
                  : decoded.kind === 'memory'
                    ? encodeMemory(decoded.memory)
                    : decoded.kind === 'delete'
                      ? encodeDeleteId(decoded.id)
                      : decoded.kind === 'checkpoint'
                        ? encodeCheckpoint(decoded.value)
                        : Buffer.alloc(0)
              // bincode allows trailing bytes (damaged/E has 5); they are part of the payload on disk.
              const trailing = rec.payload!.subarray(payload.length)
              const record = encodeRecord({
                sequence: rec.header.sequence,
                timestampNs: rec.header.timestampNs,
                entryType: rec.header.entryType,
                payload: Buffer.concat([payload, trailing]),
              })
              expect(record.equals(bytes.subarray(rec.offset, rec.offset + rec.recordSize))).toBe(true)
              if (decoded.kind !== 'checkpoint') expect(trailing.length).toBe(exp.note?.includes('trailing') ? 5 : 0)
            }
          }
          const records = file.records ?? []
          const walked = records.filter((r: Json) => r.validity === 'ok' || r.validity === 'bad_payload_crc').length
          expect(matched).toBe(file.records ? walked : file.sample_records.length)
          if (file.records) expect(count).toBe(walked)
          else expect(count).toBe(file.records_read)
          expect(reader.recordsRead).toBe(file.records_read)
          expect(endJson(reader.end)).toEqual(
            Object.fromEntries(Object.entries(file.end).filter(([k]) => ['kind', 'offset', 'bytes', 'bytes_discarded', 'payload_bytes_present', 'truncate_to'].includes(k))),
          )
          const endRecord = records.find((r: Json) => r.validity === 'bad_header' || r.validity === 'torn')
          if (endRecord?.validity === 'bad_header') {
            const end = reader.end as Json
            expect(end.computedHeaderCrc).toBe(endRecord.computed_header_crc)
            expect(end.error).toBe(endRecord.header_error)
            expect(end.header.headerCrc).toBe(endRecord.header_crc)
            expect(end.header.magic).toBe(endRecord.magic)
          }
          if (endRecord?.validity === 'torn') expect((reader.end as Json).payloadBytesPresent).toBe(endRecord.payload_bytes_present)
          if (file.record_ids_sha256) {
            expect(sha256(ids.join('\n'))).toBe(file.record_ids_sha256)
            expect(payloadBytes).toBe(file.total_payload_bytes)
          }
        })
      }

      it(`${spaceId}: replay reaches Engram's state`, async () => {
        const d = await discoverSpaces(join(fixturesRoot, set))
        const sp = d.spaces.find((s) => s.id === spaceId)!
        const r = await replaySpace(sp, {applyLog: true})
        const st = space.replay.state
        expect(r.basis).toBe(space.replay.basis)
        expect(r.engram.outcome).toBe(space.replay.engram.outcome)
        if (r.engram.outcome === 'error') {
          expect(r.engram.file).toBe(space.replay.engram.file)
          expect(r.engram.offset).toBe(space.replay.engram.offset)
        }
        expect({
          entries_scanned: r.counters.entriesScanned,
          recovered: r.counters.recovered,
          skipped: r.counters.skipped,
          failed: r.counters.failed,
          episodes_stored: r.counters.episodesStored,
          duplicates_skipped: r.counters.duplicatesSkipped,
          deletes_applied: r.counters.deletesApplied,
          deletes_that_removed: r.counters.deletesThatRemoved,
          ignored_entry_types: r.counters.ignoredEntryTypes,
          live_count: r.counters.liveCount,
        }).toEqual(Object.fromEntries(Object.entries(st).filter(([k]) => !['live_ids_sha256', 'apply_log', 'live'].includes(k))))
        expect(sha256([...r.live.keys()].join('\n'))).toBe(st.live_ids_sha256)
        if (st.live) {
          expect([...r.live.values()].map((l) => ({id: l.id, file: l.file, offset: l.offset, sequence: String(l.sequence)}))).toEqual(st.live)
        }
        if (st.apply_log) {
          const log = r.applyLog!.map((a) => {
            const o: Json = {file: a.file, offset: a.offset, sequence: String(a.sequence), entry_type: a.entryType}
            if (a.id !== undefined) o.id = a.id
            if (a.removed !== undefined) o.removed = a.removed
            if (a.error !== undefined) o.error = a.error
            o.action = a.action
            return o
          })
          // Decode error texts are informational (they come from the Rust decoder); compare the rest.
          const strip = (e: Json) => {
            const {error: _error, ...rest} = e
            return rest
          }
          expect(log.map(strip)).toEqual(st.apply_log.map(strip))
        }
      })
    }
  })
}
