/**
 * GFS retention planning on synthetic manifests (only the fields planRetention uses): exact kept and
 * deleted sets for each rule, UTC days / ISO weeks / months, ordering by manifest start times (never
 * ids), chain safety and min-full.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {Manifest} from '../../src/lib/repo/manifest.js'
import {planRetention, type RetentionDecision, type RetentionPolicy} from '../../src/lib/retention/policy.js'
import {Prng} from '../../src/lib/engine/generate.js'

interface Syn {
  id: string
  type: 'full' | 'incremental'
  startedAt: string
  chain: string[]
  at: Date
}

const NONE: RetentionPolicy = {keepLast: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, keepWithinMs: 0, minFull: 0}
const HOUR = 3_600_000

/** Ids whose lexical order has nothing to do with time (a permutation of the counter). */
let counter = 0
const nextId = () => `b${String((counter++ * 7919) % 100_003).padStart(6, '0')}`

const asManifests = (list: Syn[]) => list.map((s) => ({id: s.id, type: s.type, startedAt: s.startedAt, chain: s.chain}) as unknown as Manifest)

/** A full at `start`, then incrementals every hour after it (each chained to the previous one), `count` backups in all. */
function dayChain(start: Date, count: number): Syn[] {
  const out: Syn[] = []
  const chain: string[] = []
  for (let h = 0; h < count; h++) {
    const at = new Date(start.getTime() + h * HOUR)
    const id = nextId()
    chain.push(id)
    out.push({id, type: h === 0 ? 'full' : 'incremental', startedAt: at.toISOString(), chain: [...chain], at})
  }
  return out
}

const dateOf = (s: Syn) => s.startedAt.slice(0, 10)
const kept = (d: RetentionDecision[]) => new Set(d.filter((x) => x.keep).map((x) => x.id))
const idsWhere = (list: Syn[], pred: (s: Syn) => boolean) => new Set(list.filter(pred).map((s) => s.id))

/**
 * The main history: a daily full at 00:00 UTC and 23 hourly incrementals, every day from 2025-02-01 to
 * 2026-04-29 except Monday 2026-04-27 (no backup that day). On Thursday 2026-04-30 a second full is
 * taken at 12:00 and the afternoon's incrementals chain to it.
 */
let history: Syn[]
let manifests: Manifest[]
const byDate = new Map<string, Syn[]>()
const LAST = '2026-04-30'
let newest: Syn
let noonFull: Syn
let morningFull: Syn

const sortedIds = (s: Set<string>) => [...s].sort()
const wholeDays = (...dates: string[]) => idsWhere(history, (s) => dates.includes(dateOf(s)) && dateOf(s) !== LAST)
const afternoon = () => idsWhere(history, (s) => dateOf(s) === LAST && s.at.getUTCHours() >= 12)
const union = (...sets: Array<Set<string>>) => new Set(sets.flatMap((s) => [...s]))

let savedTz: string | undefined
beforeAll(() => {
  // Buckets are UTC: run in a time zone far from it so local-time mistakes show.
  savedTz = process.env.TZ
  process.env.TZ = 'Pacific/Kiritimati' // UTC+14
  expect(new Date('2026-04-26T23:00:00Z').getDay()).toBe(1) // Monday there, Sunday in UTC
  history = []
  for (let t = Date.UTC(2025, 1, 1); t <= Date.UTC(2026, 3, 29); t += 24 * HOUR) {
    if (new Date(t).toISOString().startsWith('2026-04-27')) continue
    history.push(...dayChain(new Date(t), 24))
  }
  history.push(...dayChain(new Date(`${LAST}T00:00:00Z`), 12))
  history.push(...dayChain(new Date(`${LAST}T12:00:00Z`), 12))
  for (const s of history) {
    if (!byDate.has(dateOf(s))) byDate.set(dateOf(s), [])
    byDate.get(dateOf(s))!.push(s)
  }
  newest = history.at(-1)!
  noonFull = history.find((s) => s.startedAt === `${LAST}T12:00:00.000Z`)!
  morningFull = history.find((s) => s.startedAt === `${LAST}T00:00:00.000Z`)!
  // Shuffle: planRetention must not rely on input order either.
  const rng = new Prng(99)
  const shuffled = [...history]
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]]
  }
  manifests = asManifests(shuffled)
})
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ
  else process.env.TZ = savedTz
})

describe('planRetention on 15 months of daily fulls and hourly incrementals', () => {
  it('the data set is what the expectations assume', () => {
    expect(history.length).toBe(452 * 24 + 24) // 453 days from 2025-02-01 to 2026-04-29, one without backups
    expect(byDate.has('2026-04-27')).toBe(false)
    expect(newest.startedAt).toBe(`${LAST}T23:00:00.000Z`)
    expect(newest.chain[0]).toBe(noonFull.id)
    expect(newest.chain).toHaveLength(12)
    // Ids do not sort by time.
    const byId = [...history].sort((a, b) => (a.id < b.id ? -1 : 1))
    expect(byId.at(-1)!.id).not.toBe(newest.id)
  })

  it('returns every backup once, newest first by start time', () => {
    const d = planRetention(manifests, NONE)
    expect(d).toHaveLength(history.length)
    expect(d.map((x) => x.id)).toEqual([...history].reverse().map((s) => s.id))
    expect(d.every((x) => !x.keep && x.reasons.length === 0)).toBe(true)
    expect(d[0]).toEqual({id: newest.id, type: 'incremental', startedAt: newest.startedAt, keep: false, reasons: []})
  })

  it('keep-last 3: the three newest and the chain they need (the afternoon full and its incrementals), nothing else', () => {
    const d = planRetention(manifests, {...NONE, keepLast: 3})
    expect(sortedIds(kept(d))).toEqual(sortedIds(afternoon()))
    expect(kept(d).size).toBe(12)
    // Each kept backup says why: its rule, then every kept backup whose chain needs it (newest first).
    const [n0, n1, n2] = d.slice(0, 3).map((x) => x.id)
    expect(d.slice(0, 3).map((x) => x.reasons)).toEqual([['last'], ['last', `needed by ${n0}`], ['last', `needed by ${n0}`, `needed by ${n1}`]])
    // The afternoon full is needed by all 11 of its incrementals, each of them kept.
    const incs = d.filter((x) => x.type === 'incremental' && x.startedAt >= noonFull.startedAt).map((x) => `needed by ${x.id}`)
    expect(incs).toHaveLength(11)
    expect(d.find((x) => x.id === noonFull.id)!.reasons).toEqual(incs)
    expect(d.find((x) => x.id === morningFull.id)!.keep).toBe(false)
  })

  it('keep-daily 7: the newest backup of each of the last 7 UTC days that have one (skipping the empty day), with chains', () => {
    const d = planRetention(manifests, {...NONE, keepDaily: 7})
    const expected = union(afternoon(), wholeDays('2026-04-29', '2026-04-28', '2026-04-26', '2026-04-25', '2026-04-24', '2026-04-23'))
    expect(sortedIds(kept(d))).toEqual(sortedIds(expected))
    expect(kept(d).size).toBe(12 + 6 * 24)
    const reasons = d.filter((x) => x.reasons.some((r) => r.startsWith('daily'))).map((x) => [x.startedAt, x.reasons])
    expect(reasons).toEqual(
      ['2026-04-30', '2026-04-29', '2026-04-28', '2026-04-26', '2026-04-25', '2026-04-24', '2026-04-23'].map((day) => [`${day}T23:00:00.000Z`, [`daily ${day}`]]),
    )
  })

  it('keep-weekly 4: the newest backup of each of the last 4 ISO weeks (UTC), with chains', () => {
    const d = planRetention(manifests, {...NONE, keepWeekly: 4})
    // 2026-W18 (Apr 27-30): Thursday afternoon; W17, W16, W15: their Sundays.
    const expected = union(afternoon(), wholeDays('2026-04-26', '2026-04-19', '2026-04-12'))
    expect(sortedIds(kept(d))).toEqual(sortedIds(expected))
    expect(d.filter((x) => x.reasons.some((r) => r.startsWith('weekly'))).map((x) => [x.startedAt, x.reasons])).toEqual([
      ['2026-04-30T23:00:00.000Z', ['weekly 2026-W18']],
      ['2026-04-26T23:00:00.000Z', ['weekly 2026-W17']],
      ['2026-04-19T23:00:00.000Z', ['weekly 2026-W16']],
      ['2026-04-12T23:00:00.000Z', ['weekly 2026-W15']],
    ])
  })

  it('keep-monthly 12: the newest backup of each of the last 12 months, with chains', () => {
    const d = planRetention(manifests, {...NONE, keepMonthly: 12})
    const lastDays = ['2026-03-31', '2026-02-28', '2026-01-31', '2025-12-31', '2025-11-30', '2025-10-31', '2025-09-30', '2025-08-31', '2025-07-31', '2025-06-30', '2025-05-31']
    expect(sortedIds(kept(d))).toEqual(sortedIds(union(afternoon(), wholeDays(...lastDays))))
    expect(kept(d).size).toBe(12 + 11 * 24)
    expect(d.filter((x) => x.reasons.some((r) => r.startsWith('monthly'))).map((x) => x.reasons[0])).toEqual(
      ['2026-04', '2026-03', '2026-02', '2026-01', '2025-12', '2025-11', '2025-10', '2025-09', '2025-08', '2025-07', '2025-06', '2025-05'].map((m) => `monthly ${m}`),
    )
    // February-April 2025 are beyond 12 months: nothing of them is kept.
    expect(history.filter((s) => s.startedAt < '2025-05' && kept(d).has(s.id))).toEqual([])
  })

  it('keep-within 35h: everything started within 35 h of the newest (inclusive), with chains', () => {
    const d = planRetention(manifests, {...NONE, keepWithinMs: 35 * HOUR})
    // Newest 2026-04-30T23:00; 35 h earlier is 2026-04-29T12:00, kept (the boundary is inclusive),
    // which needs the whole morning of the 29th.
    expect(sortedIds(kept(d))).toEqual(sortedIds(idsWhere(history, (s) => s.startedAt >= '2026-04-29')))
    const at = (iso: string) => d.find((x) => x.startedAt === iso)!
    const afternoon29 = (from: number) => byDate.get('2026-04-29')!.filter((s) => s.at.getUTCHours() >= from).reverse().map((s) => `needed by ${s.id}`)
    expect(at('2026-04-29T12:00:00.000Z').reasons).toEqual(['within', ...afternoon29(13)])
    expect(at('2026-04-29T11:00:00.000Z').reasons).toEqual(afternoon29(12))
    const within1ms = planRetention(manifests, {...NONE, keepWithinMs: 35 * HOUR - 1})
    expect(sortedIds(kept(within1ms))).toEqual(sortedIds(kept(d)))
    expect(within1ms.find((x) => x.startedAt === '2026-04-29T12:00:00.000Z')!.reasons).toEqual(afternoon29(13))
    expect(within1ms.find((x) => x.startedAt === '2026-04-29T13:00:00.000Z')!.reasons[0]).toBe('within')
  })

  it('min-full 2 alone keeps the two newest fulls and nothing that depends on them', () => {
    const d = planRetention(manifests, {...NONE, minFull: 2})
    expect(sortedIds(kept(d))).toEqual(sortedIds(new Set([noonFull.id, morningFull.id])))
    expect(d.find((x) => x.id === morningFull.id)!.reasons).toEqual(['min-full'])
  })

  it('min-full keeps at least N fulls even when the other rules would drop them', () => {
    const d = planRetention(manifests, {...NONE, keepLast: 1, minFull: 5})
    const fulls = ['2026-04-29', '2026-04-28', '2026-04-26'].map((day) => history.find((s) => s.startedAt === `${day}T00:00:00.000Z`)!.id)
    expect(sortedIds(kept(d))).toEqual(sortedIds(union(afternoon(), new Set([morningFull.id, ...fulls]))))
    expect(d.filter((x) => x.keep && x.type === 'full')).toHaveLength(5)
    // min-full always keeps the newest N fulls, even when the rules already keep N older ones.
    const daily = planRetention(manifests, {...NONE, keepDaily: 3, minFull: 2})
    expect(sortedIds(kept(daily))).toEqual(sortedIds(union(afternoon(), wholeDays('2026-04-29', '2026-04-28'), new Set([morningFull.id]))))
    expect(daily.find((x) => x.id === morningFull.id)!.reasons).toEqual(['min-full'])
    expect(daily.find((x) => x.id === noonFull.id)!.reasons[0]).toBe('min-full')
  })

  it('the default policy (daily 7, weekly 4, monthly 12, min-full 2) keeps exactly the union of its rules', () => {
    const policy = {...NONE, keepDaily: 7, keepWeekly: 4, keepMonthly: 12, minFull: 2}
    const d = planRetention(manifests, policy)
    const expected = union(
      afternoon(),
      new Set([morningFull.id]),
      wholeDays('2026-04-29', '2026-04-28', '2026-04-26', '2026-04-25', '2026-04-24', '2026-04-23'),
      wholeDays('2026-04-19', '2026-04-12'),
      wholeDays('2026-03-31', '2026-02-28', '2026-01-31', '2025-12-31', '2025-11-30', '2025-10-31', '2025-09-30', '2025-08-31', '2025-07-31', '2025-06-30', '2025-05-31'),
    )
    expect(sortedIds(kept(d))).toEqual(sortedIds(expected))
    expect(kept(d).size).toBe(12 + 1 + 6 * 24 + 2 * 24 + 11 * 24)
    expect(d.filter((x) => !x.keep)).toHaveLength(history.length - expected.size)
    expect(d[0].reasons).toEqual(['daily 2026-04-30', 'weekly 2026-W18', 'monthly 2026-04'])
    expect(d.find((x) => x.startedAt === '2026-04-26T23:00:00.000Z')!.reasons).toEqual(['daily 2026-04-26', 'weekly 2026-W17'])
    expect(d.find((x) => x.startedAt === '2026-03-31T23:00:00.000Z')!.reasons).toEqual(['monthly 2026-03'])
  })

  it('never keeps an incremental without its full and every ancestor, for any policy', () => {
    const rng = new Prng(5)
    const byId = new Map(history.map((s) => [s.id, s]))
    const fullsNewestFirst = [...history].reverse().filter((s) => s.type === 'full')
    for (let i = 0; i < 40; i++) {
      const policy: RetentionPolicy = {
        keepLast: rng.int(30),
        keepDaily: rng.int(10),
        keepWeekly: rng.int(6),
        keepMonthly: rng.int(14),
        keepWithinMs: rng.int(3) === 0 ? rng.int(72) * HOUR + rng.int(HOUR) : 0,
        minFull: rng.int(6),
      }
      const d = planRetention(manifests, policy)
      const k = kept(d)
      for (const id of k) for (const a of byId.get(id)!.chain) expect(k.has(a), `${id} needs ${a} (${JSON.stringify(policy)})`).toBe(true)
      for (const f of fullsNewestFirst.slice(0, policy.minFull)) expect(k.has(f.id)).toBe(true)
      // A deleted backup is never in the chain of a kept one.
      const deleted = new Set(d.filter((x) => !x.keep).map((x) => x.id))
      for (const id of k) expect(byId.get(id)!.chain.some((a) => deleted.has(a))).toBe(false)
      // Nothing is kept without a reason.
      expect(d.every((x) => x.keep === x.reasons.length > 0)).toBe(true)
    }
  })
})

describe('planRetention ordering and buckets', () => {
  it('orders by manifest start times even when ids sort the other way', () => {
    // Ids sort newest-last by name, but start times say otherwise (a clock that was set back).
    const list = [
      {id: '20260101T000000Z-full-aaaaaa', type: 'full', startedAt: '2026-03-01T10:00:00.000Z', chain: ['20260101T000000Z-full-aaaaaa']},
      {id: '20260201T000000Z-full-bbbbbb', type: 'full', startedAt: '2026-02-01T10:00:00.000Z', chain: ['20260201T000000Z-full-bbbbbb']},
      {id: '20260301T000000Z-full-cccccc', type: 'full', startedAt: '2026-01-01T10:00:00.000Z', chain: ['20260301T000000Z-full-cccccc']},
    ] as unknown as Manifest[]
    const d = planRetention(list, {...NONE, keepLast: 1})
    expect(d.map((x) => [x.id, x.keep])).toEqual([
      ['20260101T000000Z-full-aaaaaa', true],
      ['20260201T000000Z-full-bbbbbb', false],
      ['20260301T000000Z-full-cccccc', false],
    ])
    const monthly = planRetention(list, {...NONE, keepMonthly: 2})
    expect(monthly.filter((x) => x.keep).map((x) => x.reasons)).toEqual([['monthly 2026-03'], ['monthly 2026-02']])
  })

  it('ISO weeks across a year boundary with a week 53, in UTC', () => {
    // Daily fulls at 23:30 UTC (already the next day east of UTC) from 2020-12-14 to 2021-01-10.
    const list: Syn[] = []
    for (let t = Date.UTC(2020, 11, 14, 23, 30); t <= Date.UTC(2021, 0, 10, 23, 30); t += 24 * HOUR) list.push(...dayChain(new Date(t), 1))
    const d = planRetention(asManifests(list), {...NONE, keepWeekly: 4})
    expect(d.filter((x) => x.keep).map((x) => [x.startedAt, x.reasons])).toEqual([
      ['2021-01-10T23:30:00.000Z', ['weekly 2021-W01']],
      ['2021-01-03T23:30:00.000Z', ['weekly 2020-W53']], // Dec 28 2020 - Jan 3 2021 are one week
      ['2020-12-27T23:30:00.000Z', ['weekly 2020-W52']],
      ['2020-12-20T23:30:00.000Z', ['weekly 2020-W51']],
    ])
    const days = planRetention(asManifests(list), {...NONE, keepDaily: 2})
    expect(days.filter((x) => x.keep).map((x) => x.reasons)).toEqual([['daily 2021-01-10'], ['daily 2021-01-09']])
    // 2025-12-29 (Monday) starts ISO week 2026-W01.
    const boundary = [...dayChain(new Date('2025-12-28T12:00:00Z'), 1), ...dayChain(new Date('2025-12-29T00:00:00Z'), 1), ...dayChain(new Date('2026-01-02T00:00:00Z'), 1)]
    expect(planRetention(asManifests(boundary), {...NONE, keepWeekly: 5}).filter((x) => x.keep).map((x) => [x.startedAt.slice(0, 10), x.reasons])).toEqual([
      ['2026-01-02', ['weekly 2026-W01']],
      ['2025-12-28', ['weekly 2025-W52']],
    ])
  })

  it('an empty repository plans nothing', () => {
    expect(planRetention([], {...NONE, keepLast: 3, keepDaily: 7, minFull: 2})).toEqual([])
  })
})
