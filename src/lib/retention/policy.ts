/**
 * GFS retention over complete backups, ordered by their manifests' start times (never by names or
 * file times). A backup is kept if any rule keeps it; then every kept incremental pulls in its whole
 * chain (an incremental is never kept without its full), and the newest `minFull` full backups are
 * always kept. Everything else, and the objects of backups that never completed, is deleted.
 *
 * Buckets are UTC days, ISO weeks and months. As in restic, each daily/weekly/monthly rule keeps the
 * newest backup of each of the last N buckets that have one; `keepWithin` keeps everything newer
 * than the newest backup minus the duration.
 */
import {byStartTime, type Manifest} from '../repo/manifest.js'

export interface RetentionPolicy {
  keepLast: number
  keepDaily: number
  keepWeekly: number
  keepMonthly: number
  /** ms; 0 for none. */
  keepWithinMs: number
  minFull: number
}

export interface RetentionDecision {
  id: string
  type: 'full' | 'incremental'
  startedAt: string
  keep: boolean
  reasons: string[]
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()))
  const day = t.getUTCDay() || 7
  t.setUTCDate(t.getUTCDate() + 4 - day)
  const yearStart = new Date(Date.UTC(t.getUTCFullYear(), 0, 1))
  const week = Math.ceil(((t.getTime() - yearStart.getTime()) / 86_400_000 + 1) / 7)
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`
}

export function planRetention(backups: Manifest[], p: RetentionPolicy): RetentionDecision[] {
  // Newest first, by manifest start time.
  const sorted = [...backups].sort((a, b) => byStartTime(b, a))
  const decisions = new Map<string, RetentionDecision>(sorted.map((m) => [m.id, {id: m.id, type: m.type, startedAt: m.startedAt, keep: false, reasons: []}]))
  const keep = (id: string, reason: string) => {
    const d = decisions.get(id)!
    d.keep = true
    if (!d.reasons.includes(reason)) d.reasons.push(reason)
  }
  sorted.slice(0, p.keepLast).forEach((m) => keep(m.id, 'last'))
  const bucketRule = (n: number, name: string, bucket: (d: Date) => string) => {
    const seen = new Set<string>()
    for (const m of sorted) {
      if (seen.size >= n) break
      const b = bucket(new Date(m.startedAt))
      if (seen.has(b)) continue
      seen.add(b)
      keep(m.id, `${name} ${b}`)
    }
  }
  bucketRule(p.keepDaily, 'daily', (d) => d.toISOString().slice(0, 10))
  bucketRule(p.keepWeekly, 'weekly', isoWeek)
  bucketRule(p.keepMonthly, 'monthly', (d) => d.toISOString().slice(0, 7))
  if (p.keepWithinMs > 0 && sorted.length > 0) {
    const newest = Date.parse(sorted[0].startedAt)
    for (const m of sorted) if (newest - Date.parse(m.startedAt) <= p.keepWithinMs) keep(m.id, 'within')
  }
  sorted.filter((m) => m.type === 'full').slice(0, p.minFull).forEach((m) => keep(m.id, 'min-full'))
  // Chain safety: a kept incremental keeps every backup it depends on.
  for (const m of sorted) {
    if (!decisions.get(m.id)!.keep) continue
    for (const ancestor of m.chain.slice(0, -1)) {
      if (decisions.has(ancestor)) keep(ancestor, `needed by ${m.id}`)
    }
  }
  return sorted.map((m) => decisions.get(m.id)!)
}
