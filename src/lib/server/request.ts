/**
 * Request parsing with axum's semantics, which Engram inherits: the JSON extractor checks the content
 * type (415), buffers the body under a size limit (413), parses it (400) and then deserializes it into
 * the handler's struct (422: missing field, wrong type), all as plain text before the handler runs.
 * Unknown fields are ignored and `null` means "absent", as with serde's Option.
 */
import type {IncomingMessage} from 'node:http'

import {parseRfc3339} from '../engine/datetime.js'
import {bodyTooLarge, jsonDataError, jsonSyntaxError, missingJsonContentType, queryError} from './errors.js'

/** axum's default body limit (DefaultBodyLimit, 2 MiB); a remember body is ~15 KB plus its content. */
export const DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024

function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false
  const mime = value.split(';')[0].trim().toLowerCase()
  const [type, subtype = ''] = mime.split('/')
  return type === 'application' && (subtype === 'json' || subtype.endsWith('+json'))
}

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) throw bodyTooLarge()
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) throw bodyTooLarge()
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** axum's `Json<T>` extractor up to (not including) the struct check. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  if (!isJsonContentType(req.headers['content-type'])) throw missingJsonContentType()
  const raw = await readBody(req, limit)
  try {
    return JSON.parse(raw.toString('utf8'))
  } catch (error) {
    throw jsonSyntaxError((error as Error).message)
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'sequence'
  if (typeof v === 'object') return 'map'
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`
  if (typeof v === 'number') return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``
  return `boolean \`${v}\``
}

/** Typed access to a JSON body object, failing like serde would (422 plain text). */
export class Fields {
  private readonly obj: Record<string, unknown>

  constructor(body: unknown, structName: string) {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw jsonDataError(`invalid type: ${describe(body)}, expected struct ${structName}`)
    }
    this.obj = body as Record<string, unknown>
  }

  private value(name: string, required: boolean): unknown {
    const v = this.obj[name]
    if (v === undefined || v === null) {
      if (required) throw jsonDataError(`missing field \`${name}\``)
      return undefined
    }
    return v
  }

  private wrong(name: string, v: unknown, expected: string): never {
    throw jsonDataError(`${name}: invalid type: ${describe(v)}, expected ${expected}`)
  }

  string(name: string, required: true): string
  string(name: string, required?: false): string | undefined
  string(name: string, required = false): string | undefined {
    const v = this.value(name, required)
    if (v !== undefined && typeof v !== 'string') this.wrong(name, v, 'a string')
    return v as string | undefined
  }

  number(name: string): number | undefined {
    const v = this.value(name, false)
    if (v !== undefined && typeof v !== 'number') this.wrong(name, v, 'f32')
    return v as number | undefined
  }

  boolean(name: string): boolean | undefined {
    const v = this.value(name, false)
    if (v !== undefined && typeof v !== 'boolean') this.wrong(name, v, 'a boolean')
    return v as boolean | undefined
  }

  strings(name: string): string[] | undefined {
    const v = this.value(name, false)
    if (v === undefined) return undefined
    if (!Array.isArray(v)) this.wrong(name, v, 'a sequence')
    for (const item of v) if (typeof item !== 'string') this.wrong(name, item, 'a string')
    return v as string[]
  }

  /** A JSON array of numbers as f32 (serde's Vec<f32>). */
  floats(name: string): Float32Array | undefined {
    const v = this.value(name, false)
    if (v === undefined) return undefined
    if (!Array.isArray(v)) this.wrong(name, v, 'a sequence')
    for (const item of v) if (typeof item !== 'number') this.wrong(name, item, 'f32')
    return Float32Array.from(v as number[])
  }

  /** chrono's `DateTime<Utc>`: any RFC 3339 offset, normalised to UTC. Returns ns since the epoch. */
  time(name: string, required: true): bigint
  time(name: string, required?: false): bigint | undefined
  time(name: string, required = false): bigint | undefined {
    const v = this.value(name, required)
    if (v === undefined) return undefined
    if (typeof v !== 'string') this.wrong(name, v, 'an RFC 3339 date-time string')
    const ns = parseRfc3339(v)
    if (ns === null) throw jsonDataError(`${name}: input contains invalid characters or is not an RFC 3339 date-time`)
    return ns
  }
}

/** Query-string parameters with serde_urlencoded's typing (plain-text 400 on a bad value). */
export class Query {
  constructor(private readonly params: URLSearchParams) {}

  string(name: string): string | undefined {
    return this.params.get(name) ?? undefined
  }

  /** A usize. */
  integer(name: string): number | undefined {
    const v = this.params.get(name)
    if (v === null) return undefined
    if (!/^\+?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw queryError(`${name}: invalid digit found in string`)
    return Number(v)
  }

  boolean(name: string): boolean | undefined {
    const v = this.params.get(name)
    if (v === null) return undefined
    if (v !== 'true' && v !== 'false') throw queryError(`${name}: provided string was not \`true\` or \`false\``)
    return v === 'true'
  }
}

/** One header value (Node joins repeated custom headers with ", "; Engram reads the first). */
export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()]
  return Array.isArray(v) ? v[0] : v
}

/**
 * The shortest decimal that reads back as the same f32, which is how serde_json (ryu) prints an f32:
 * a stored 0.7 comes back as 0.7, not 0.699999988079071.
 */
export function f32ToJson(v: number): number {
  const f = Math.fround(v)
  if (!Number.isFinite(f) || f === 0) return f
  // If p digits read back as f, so do p+1 digits, so the shortest precision can be bisected
  // (an export page holds 768,000 of these). 9 digits always round-trip an f32.
  let lo = 1
  let hi = 9
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (Math.fround(Number(f.toPrecision(mid))) === f) hi = mid
    else lo = mid + 1
  }
  return Number(f.toPrecision(lo))
}
