/**
 * Tests that need an external service (PostgreSQL, Redis, an S3 server they start themselves) call
 * this when it is unreachable: locally the test is skipped with a reason; in CI (CI=true or
 * ENGRAM_OPS_REQUIRE_SERVICES=1) it fails, so a missing service can never pass silently.
 */
export function serviceUnavailable(ctx: {skip: (note?: string) => void}, what: string, why: string): void {
  if (process.env.CI === 'true' || process.env.CI === '1' || process.env.ENGRAM_OPS_REQUIRE_SERVICES === '1') {
    throw new Error(`${what} is required in CI but unavailable: ${why}`)
  }
  ctx.skip(`${what} unavailable: ${why}`)
}
