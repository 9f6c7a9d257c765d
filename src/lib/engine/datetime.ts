/**
 * chrono `DateTime<Utc>` as bincode stores it: an RFC 3339 string. chrono writes `Z` and the
 * shortest exact fraction of 0, 3, 6 or 9 digits; it reads any RFC 3339 offset. We keep the exact
 * stored string on decoded records (so re-encoding reproduces the bytes) and convert to and from
 * nanoseconds since the epoch as bigint (values pass 2^53).
 */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/

const NS_PER_SEC = 1_000_000_000n
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

function isLeapYear(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0
}

/** Days from 1970-01-01 to the given civil date (proleptic Gregorian). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y
  const era = Math.floor(yy / 400)
  const yoe = yy - era * 400
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
  return era * 146_097 + doe - 719_468
}

function civilFromDays(z: number): [number, number, number] {
  const zz = z + 719_468
  const era = Math.floor(zz / 146_097)
  const doe = zz - era * 146_097
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365)
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1
  const m = mp < 10 ? mp + 3 : mp - 9
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d]
}

/** Whether `text` is an RFC 3339 date-time chrono accepts (the cheap check done on every decode). */
export function isRfc3339(text: string): boolean {
  return validFields(RFC3339.exec(text)) !== null
}

function validFields(m: RegExpExecArray | null): RegExpExecArray | null {
  if (!m) return null
  const year = Number(m[1])
  const month = Number(m[2])
  const day = Number(m[3])
  if (month < 1 || month > 12 || day < 1) return null
  const dim = month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1]
  if (day > dim || Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6]) > 60) return null
  if (!m[8] && (Number(m[10]) > 23 || Number(m[11]) > 59)) return null
  return m
}

/** Parses an RFC 3339 date-time into ns since the epoch; null when it is not one (Engram rejects it). */
export function parseRfc3339(text: string): bigint | null {
  const m = validFields(RFC3339.exec(text))
  if (!m) return null
  const year = Number(m[1])
  const month = Number(m[2])
  const day = Number(m[3])
  const hour = Number(m[4])
  const minute = Number(m[5])
  const second = Number(m[6])
  const offsetMinutes = m[8] ? 0 : (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11]))
  const fraction = m[7] ? BigInt(m[7].padEnd(9, '0')) : 0n
  // chrono represents a leap second as second 59 with a fraction of 1e9 + f.
  const leap = second === 60 ? 1 : 0
  const secs =
    BigInt(daysFromCivil(year, month, day)) * 86_400n +
    BigInt(hour * 3600 + minute * 60 + second - leap - offsetMinutes * 60)
  return secs * NS_PER_SEC + fraction + BigInt(leap) * NS_PER_SEC
}

/** Formats ns since the epoch exactly as chrono's serde does: `Z`, fraction of 0/3/6/9 digits. */
export function formatRfc3339(ns: bigint): string {
  let secs = ns / NS_PER_SEC
  let frac = ns % NS_PER_SEC
  if (frac < 0n) {
    frac += NS_PER_SEC
    secs -= 1n
  }
  let days = secs / 86_400n
  let rem = secs % 86_400n
  if (rem < 0n) {
    rem += 86_400n
    days -= 1n
  }
  const [y, mo, d] = civilFromDays(Number(days))
  const r = Number(rem)
  const pad = (v: number, w = 2) => String(v).padStart(w, '0')
  const year = y < 0 ? `-${pad(-y, 4)}` : y > 9999 ? `+${y}` : pad(y, 4)
  let text = `${year}-${pad(mo)}-${pad(d)}T${pad(Math.floor(r / 3600))}:${pad(Math.floor((r % 3600) / 60))}:${pad(r % 60)}`
  if (frac !== 0n) {
    const f = Number(frac)
    if (f % 1_000_000 === 0) text += `.${pad(f / 1_000_000, 3)}`
    else if (f % 1000 === 0) text += `.${pad(f / 1000, 6)}`
    else text += `.${pad(f, 9)}`
  }
  return `${text}Z`
}

/** Current time in ns since the epoch, with sub-millisecond resolution and never going backwards. */
let lastNow = 0n
const hrAnchor = process.hrtime.bigint()
const wallAnchor = BigInt(Date.now()) * 1_000_000n
export function nowNs(): bigint {
  let t = wallAnchor + (process.hrtime.bigint() - hrAnchor)
  if (t <= lastNow) t = lastNow + 1n
  lastNow = t
  return t
}
