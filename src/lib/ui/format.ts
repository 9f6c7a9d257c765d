/** Human formatting shared by every command: IEC sizes, durations, rates, times. */
import {formatRfc3339} from '../engine/datetime.js'

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n)
  let v = n
  let u = 0
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024
    u++
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${UNITS[u]}`
}

/** Parses "1GiB", "512MiB", "4G" (binary), "10MB" (decimal) or "4096" into bytes; null if malformed. */
export function parseBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])(i?)(b?)|b)?\s*$/i.exec(text)
  if (!m) return null
  if (!m[2]) return Math.round(Number(m[1]))
  const power = 'kmgtp'.indexOf(m[2].toLowerCase()) + 1
  const decimal = m[4] !== '' && m[3] === ''
  return Math.round(Number(m[1]) * (decimal ? 1000 : 1024) ** power)
}

/** Parses "90s", "15m", "24h", "7d", "2w" (or plain seconds) into milliseconds. */
export function parseDuration(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(text)
  if (!m) return null
  const factor = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}[m[2] ?? 's']!
  return Number(m[1]) * factor
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const m = Math.floor(ms / 60_000)
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`
}

export function formatRate(bytes: number, ms: number): string {
  return ms > 0 ? `${formatBytes((bytes * 1000) / ms)}/s` : 'n/a'
}

export function formatNs(ns: bigint | null | undefined): string {
  return ns === null || ns === undefined ? '-' : formatRfc3339(ns)
}
