/** mapConcurrently: bounded, results in order, and a failure reported only once every call has settled. */
import {setTimeout as sleep} from 'node:timers/promises'

import {describe, expect, it} from 'vitest'

import {mapConcurrently} from '../../src/lib/concurrent.js'

describe('mapConcurrently', () => {
  it('runs at most `concurrency` calls at once and returns results in input order', async () => {
    let running = 0
    let most = 0
    const out = await mapConcurrently(
      [30, 5, 20, 1, 10, 15],
      async (ms) => {
        running++
        most = Math.max(most, running)
        await sleep(ms)
        running--
        return ms * 2
      },
      3,
    )
    expect(out).toEqual([60, 10, 40, 2, 20, 30])
    expect(most).toBe(3)
  })

  it('rejects only after every call has settled, with the first failure in input order', async () => {
    const finished: number[] = []
    const failing = mapConcurrently(
      [0, 1, 2, 3, 4, 5],
      async (i) => {
        // Item 3 fails first in time, item 1 later; the others finish after both.
        await sleep(i === 3 ? 5 : i === 1 ? 30 : 60)
        finished.push(i)
        if (i === 1 || i === 3) throw new Error(`item ${i}`)
        return i
      },
      6,
    )
    await expect(failing).rejects.toThrow('item 1')
    expect(finished.sort()).toEqual([0, 1, 2, 3, 4, 5])
  })
})
