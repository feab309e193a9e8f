// Counters whose hot path is an addition on a cell the caller keeps, and metrics read from elsewhere at scrape time.
// prom-client's own `inc(labels)` validates and hashes the label object on every call (about 1 µs here, as much as
// an in-process invoke); these keep the same figures in plain numbers and hand them to prom-client's registry as
// metric objects of the shape its own metrics return from `get()`, so the exposition is prom-client's.
import type { Metric, Registry } from 'prom-client'

type Labels = Readonly<Record<string, string>>

export interface CounterCell {
  value: number
}

abstract class Family<Cell> {
  readonly aggregator = 'sum'
  readonly #cells = new Map<string, { readonly labels: Labels, readonly cell: Cell }>()

  constructor (registry: Registry, readonly name: string, readonly help: string, readonly labelNames: readonly string[]) {
    // the registry formats any metric object whose get() answers as prom-client's own do
    registry.registerMetric(this as unknown as Metric)
  }

  /** The cell of one label set, made on first use; callers keep it and add to it directly. */
  cell (...values: string[]): Cell {
    const key = values.join('\u0000')
    let entry = this.#cells.get(key)
    if (entry === undefined) {
      const labels: Record<string, string> = {}
      this.labelNames.forEach((name, i) => { labels[name] = values[i] ?? '' })
      entry = { labels, cell: this.create() }
      this.#cells.set(key, entry)
    }
    return entry.cell
  }

  protected abstract create (): Cell

  protected entries (): IterableIterator<{ readonly labels: Labels, readonly cell: Cell }> {
    return this.#cells.values()
  }

  reset (): void {
    this.#cells.clear()
  }
}

export class CounterFamily extends Family<CounterCell> {
  readonly type = 'counter'

  protected create (): CounterCell {
    return { value: 0 }
  }

  async get (): Promise<object> {
    const values = [...this.entries()].map(({ labels, cell }) => ({ labels, value: cell.value }))
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}

/** One sample of a metric as prom-client's registry formats it. */
export interface MetricValue {
  readonly labels: Labels
  readonly value: number
  /** `<name>_bucket`, `<name>_sum`, `<name>_count` for a histogram's samples. */
  readonly metricName?: string
}

/**
 * A metric whose samples are read from elsewhere when Prometheus scrapes (the dispatcher's invocation tallies):
 * nothing is kept or updated between scrapes.
 */
export class CollectedMetric {
  readonly aggregator = 'sum'

  constructor (registry: Registry, readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge' | 'histogram', readonly collect: () => MetricValue[]) {
    registry.registerMetric(this as unknown as Metric)
  }

  async get (): Promise<object> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.collect() }
  }

  reset (): void {}
}

/** A histogram's series (`_bucket` cumulative, `_sum`, `_count`) from per-bucket counts. */
export function histogramValues (name: string, labels: Record<string, string>, histogram: { readonly bounds: readonly number[], readonly counts: readonly number[], readonly sumSeconds: number, readonly count: number }): MetricValue[] {
  const values: MetricValue[] = []
  let cumulative = 0
  histogram.bounds.forEach((bound, i) => {
    cumulative += histogram.counts[i] ?? 0
    values.push({ labels: { ...labels, le: String(bound) }, value: cumulative, metricName: `${name}_bucket` })
  })
  values.push({ labels: { ...labels, le: '+Inf' }, value: histogram.count, metricName: `${name}_bucket` })
  values.push({ labels, value: histogram.sumSeconds, metricName: `${name}_sum` })
  values.push({ labels, value: histogram.count, metricName: `${name}_count` })
  return values
}
