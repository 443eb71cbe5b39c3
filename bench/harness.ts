/** Small timing helpers shared by every benchmark module. */
import { performance } from "node:perf_hooks";

export type Figures = Record<string, number>;
export type BenchModule = () => Promise<Figures>;

/** Runs `fn` for about `ms` milliseconds (after a warm-up) and returns operations per second. */
export async function opsPerSecond(fn: () => unknown, ms = 1000): Promise<number> {
  const deadlineWarm = performance.now() + Math.min(200, ms / 4);
  while (performance.now() < deadlineWarm) await fn();
  let n = 0;
  const start = performance.now();
  const end = start + ms;
  while (performance.now() < end) {
    await fn();
    n++;
  }
  return (n * 1000) / (performance.now() - start);
}

/** Median of `samples` single timings of `fn`, in microseconds, after `warmup` runs. */
export async function medianMicros(fn: () => unknown, samples = 2000, warmup = 200): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times = new Float64Array(samples);
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    await fn();
    times[i] = (performance.now() - t) * 1000;
  }
  times.sort();
  return times[Math.floor(samples / 2)] ?? 0;
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * Medians (µs) of `a` and `b` timed call for call in alternation (a, b, a, b, ...), after
 * `warmup` of each. For two variants of one call whose difference is small: timed in separate
 * stretches, whichever came second after a switch from other work measured slower (here, an
 * 8% "cost" of one variant over the other became a 6% gain when the order was swapped).
 */
export async function pairedMedianMicros(
  a: () => unknown,
  b: () => unknown,
  samples = 1000,
  warmup = 100,
): Promise<[number, number]> {
  for (let i = 0; i < warmup; i++) {
    await a();
    await b();
  }
  const ta = new Float64Array(samples);
  const tb = new Float64Array(samples);
  for (let i = 0; i < samples; i++) {
    let t = performance.now();
    await a();
    ta[i] = (performance.now() - t) * 1000;
    t = performance.now();
    await b();
    tb[i] = (performance.now() - t) * 1000;
  }
  ta.sort();
  tb.sort();
  return [ta[Math.floor(samples / 2)] ?? 0, tb[Math.floor(samples / 2)] ?? 0];
}

/**
 * Medians (µs) of each of `fns`, timed call for call in turn (a, b, c, a, b, c, ...), after
 * `warmup` of each: pairedMedianMicros for more than two variants, so each is compared with
 * the others under the same load.
 */
export async function interleavedMedianMicros(
  fns: ReadonlyArray<() => unknown>,
  samples = 1000,
  warmup = 100,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) for (const fn of fns) await fn();
  const times = fns.map(() => new Float64Array(samples));
  for (let i = 0; i < samples; i++) {
    for (let k = 0; k < fns.length; k++) {
      const t = performance.now();
      await fns[k]!();
      times[k]![i] = (performance.now() - t) * 1000;
    }
  }
  return times.map((t) => {
    t.sort();
    return t[Math.floor(samples / 2)] ?? 0;
  });
}
