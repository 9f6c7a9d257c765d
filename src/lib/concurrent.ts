/** Bounded concurrency for independent calls (repository walks, manifest reads). */
import pMap from 'p-map'

/**
 * `fn` over `items`, at most `concurrency` calls at once, results in input order. Every call settles
 * before this returns: a failure does not leave others running on (deleting, writing) after the caller
 * has moved on, for instance released a lock. The failure thrown is the first in input order, so the
 * same damage gives the same error from run to run.
 */
export async function mapConcurrently<T, R>(items: Iterable<T>, fn: (item: T) => Promise<R>, concurrency: number): Promise<R[]> {
  try {
    return await pMap(items, fn, {concurrency, stopOnError: false})
  } catch (error) {
    // With stopOnError false, p-map gathers every failure, in input order, into one AggregateError.
    throw error instanceof AggregateError && error.errors.length > 0 ? error.errors[0] : error
  }
}
