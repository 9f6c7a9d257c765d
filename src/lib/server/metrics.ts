/**
 * `GET /metrics/prometheus` for `engine serve`. Engram's own exporter emits a fixed allowlist of 53
 * spreading/consolidation/compaction series from a 5-minute window (reference §3.2), none of which
 * this engine has; rather than emit fake zeros under those names we export a few honest series of our
 * own, with real monotonic counters:
 *
 *   engram_memories{space}                               gauge    live memories per memory space
 *   engram_wal_bytes{space}                              gauge    bytes in the space's WAL files
 *   engram_wal_files{space}                              gauge    number of WAL files of the space
 *   engram_http_requests_total{method,route,status}      counter  requests answered since start
 *   engram_uptime_seconds                                gauge    seconds since the server started
 *
 * `route` is the route pattern (e.g. /api/v1/memories/{id}) or "unmatched", so cardinality stays bounded.
 */
import {stat} from 'node:fs/promises'

import type {EngineStore} from '../engine/store.js'

function escapeLabel(v: string): string {
  return v.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')
}

function labels(l: Record<string, string | number>): string {
  return `{${Object.entries(l)
    .map(([k, v]) => `${k}="${escapeLabel(String(v))}"`)
    .join(',')}}`
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4'

export class ServerMetrics {
  private readonly started = Date.now()
  private readonly requests = new Map<string, {method: string; route: string; status: number; n: number}>()

  count(method: string, route: string, status: number): void {
    const key = `${method} ${route} ${status}`
    const entry = this.requests.get(key) ?? {method, route, status, n: 0}
    entry.n++
    this.requests.set(key, entry)
  }

  async render(store: EngineStore): Promise<string> {
    const lines: string[] = []
    const family = (name: string, type: string, help: string, samples: string[]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples)
    }
    const memories: string[] = []
    const walBytes: string[] = []
    const walFiles: string[] = []
    for (const id of store.spaceIds()) {
      const s = store.get(id)!
      let bytes = 0
      let files = 0
      for (const path of s.files.values()) {
        try {
          bytes += (await stat(path)).size
          files++
        } catch {
          // removed behind our back (e.g. by an Engram compaction run on a copy): not counted
        }
      }
      const l = labels({space: id})
      memories.push(`engram_memories${l} ${s.live.size}`)
      walBytes.push(`engram_wal_bytes${l} ${bytes}`)
      walFiles.push(`engram_wal_files${l} ${files}`)
    }
    family('engram_memories', 'gauge', 'Live memories per memory space.', memories)
    family('engram_wal_bytes', 'gauge', 'Bytes in the WAL files of each memory space.', walBytes)
    family('engram_wal_files', 'gauge', 'Number of WAL files of each memory space.', walFiles)
    family(
      'engram_http_requests_total',
      'counter',
      'HTTP requests answered since the server started.',
      [...this.requests.values()].map((r) => `engram_http_requests_total${labels({method: r.method, route: r.route, status: r.status})} ${r.n}`),
    )
    family('engram_uptime_seconds', 'gauge', 'Seconds since the server started.', [`engram_uptime_seconds ${(Date.now() - this.started) / 1000}`])
    return `${lines.join('\n')}\n`
  }
}
