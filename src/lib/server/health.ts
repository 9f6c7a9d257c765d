/**
 * Health probes behind `/health` and `/api/v1/system/health`, in the shape of Engram's HealthCheck.
 * Engram runs its probes every 10 s in the background; we run them on request (they cost a stat and a
 * memoryUsage call) and keep the same consecutive success/failure bookkeeping between runs.
 *
 *  - latency: how long a stat of the data root takes (a hung or overloaded disk shows up here first);
 *    above 100 ms (Engram's latency threshold) is degraded, a failing stat is unhealthy.
 *  - memory: resident set size against Engram's 8 GiB memory threshold; above it is degraded.
 */
import {stat} from 'node:fs/promises'

import type {HealthCheckResult, HealthStatus} from '../admin/types.js'
import {formatBytes} from '../ui/format.js'

interface ProbeState {
  successes: number
  failures: number
  lastSuccess: number | null
  lastFailure: number | null
  lastRun: number | null
}

interface ProbeOutcome {
  status: HealthStatus
  message: string
}

const RANK: Record<HealthStatus, number> = {healthy: 0, degraded: 1, unhealthy: 2}

export function worstStatus(checks: Array<{status: HealthStatus}>): HealthStatus {
  return checks.reduce<HealthStatus>((w, c) => (RANK[c.status] > RANK[w] ? c.status : w), 'healthy')
}

export class HealthProbes {
  private readonly started = Date.now()
  private readonly state = new Map<string, ProbeState>()

  constructor(
    private readonly root: string,
    private readonly latencyLimitMs = 100,
    private readonly memoryLimitBytes = 8 * 1024 ** 3,
  ) {}

  async run(): Promise<HealthCheckResult[]> {
    return [await this.probe('latency', 'latency', () => this.latency()), await this.probe('memory', 'memory', async () => this.memory())]
  }

  private async latency(): Promise<ProbeOutcome> {
    const t0 = performance.now()
    try {
      await stat(this.root)
    } catch (error) {
      return {status: 'unhealthy', message: `cannot stat the data directory: ${(error as Error).message}`}
    }
    const ms = performance.now() - t0
    return {
      status: ms > this.latencyLimitMs ? 'degraded' : 'healthy',
      message: `data directory answered a stat in ${ms.toFixed(2)} ms (threshold ${this.latencyLimitMs} ms)`,
    }
  }

  private memory(): ProbeOutcome {
    const rss = process.memoryUsage.rss()
    return {
      status: rss > this.memoryLimitBytes ? 'degraded' : 'healthy',
      message: `resident memory ${formatBytes(rss)} (threshold ${formatBytes(this.memoryLimitBytes)})`,
    }
  }

  private async probe(name: string, type: string, fn: () => Promise<ProbeOutcome>): Promise<HealthCheckResult> {
    const st = this.state.get(name) ?? {successes: 0, failures: 0, lastSuccess: null, lastFailure: null, lastRun: null}
    this.state.set(name, st)
    const t0 = performance.now()
    const outcome = await fn()
    const now = Date.now()
    if (outcome.status === 'healthy') {
      st.successes++
      st.failures = 0
      st.lastSuccess = now
    } else {
      st.failures++
      st.successes = 0
      st.lastFailure = now
    }
    st.lastRun = now
    const ago = (t: number | null) => (t === null ? null : (Date.now() - t) / 1000)
    return {
      name,
      type,
      status: outcome.status,
      message: outcome.message,
      latency_seconds: (performance.now() - t0) / 1000,
      consecutive_failures: st.failures,
      consecutive_successes: st.successes,
      // Engram reports the time since start when a probe never succeeded.
      last_success_seconds_ago: ago(st.lastSuccess ?? this.started)!,
      last_failure_seconds_ago: ago(st.lastFailure),
      last_run_seconds_ago: ago(st.lastRun),
    }
  }
}
