import type { Rng } from './rng.js';

export interface SamplingParams {
  /** 0 picks the most likely token (greedy); higher values flatten the distribution. */
  temperature: number;
  /** Nucleus sampling: draw only from the most likely tokens whose probabilities add up to top_p. */
  topP: number;
  /** Draw only from the `topK` most likely tokens (with those tied with the last of them); absent or 0: all. */
  topK?: number;
}

/** The k-th largest of `values` (k ≥ 1), through a min-heap of the k largest seen. */
export function kthLargest(values: ArrayLike<number>, k: number): number {
  const heap = new Float64Array(k);
  let size = 0;
  const siftDown = (from: number) => {
    let i = from;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < size && heap[left]! < heap[smallest]!) smallest = left;
      if (right < size && heap[right]! < heap[smallest]!) smallest = right;
      if (smallest === i) return;
      [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
      i = smallest;
    }
  };
  for (let n = 0; n < values.length; n++) {
    const value = values[n]!;
    if (size < k) {
      let i = size++;
      heap[i] = value;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (heap[parent]! <= heap[i]!) break;
        [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
        i = parent;
      }
    } else if (value > heap[0]!) {
      heap[0] = value;
      siftDown(0);
    }
  }
  return heap[0]!;
}

/** Index of the largest value; the lowest index wins a tie. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  let bestValue = values[0]!;
  for (let i = 1; i < values.length; i++) {
    if (values[i]! > bestValue) {
      bestValue = values[i]!;
      best = i;
    }
  }
  return best;
}

/**
 * Tokens whose probability is below this fraction of the most likely one's are left out of the
 * nucleus search at first; they are only sorted when the likely ones do not reach top_p.
 */
const NUCLEUS_PREFILTER = 1e-4;

/** Draws a token id from `logits` (one row, vocabulary-sized). `weights` is scratch space of the same size. */
export function sampleToken(
  logits: Float32Array,
  params: SamplingParams,
  rng: Rng,
  weights: Float64Array = new Float64Array(logits.length),
): number {
  const invTemperature = 1 / params.temperature;
  // A temperature so small that its inverse overflows is greedy decoding too.
  if (params.temperature === 0 || !Number.isFinite(invTemperature)) return argmax(logits);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  const topK = params.topK ?? 0;
  // Top-k keeps the tokens whose logit reaches the k-th largest: the same tokens at any temperature.
  const floor = topK > 0 && topK < logits.length ? kthLargest(logits, topK) : -Infinity;
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    const w = logits[i]! >= floor ? Math.exp((logits[i]! - max) * invTemperature) : 0;
    weights[i] = w;
    total += w;
  }
  if (params.topP < 1) return sampleNucleus(weights, total, params.topP, rng);
  let target = rng.next() * total;
  for (let i = 0; i < logits.length; i++) {
    target -= weights[i]!;
    if (target < 0) return i;
  }
  return argmax(logits);
}

function sampleNucleus(weights: Float64Array, total: number, topP: number, rng: Rng): number {
  // The largest weight is exp(0) = 1 after subtracting the max logit.
  let candidates: number[] = [];
  let candidateMass = 0;
  for (let i = 0; i < weights.length; i++) {
    if (weights[i]! >= NUCLEUS_PREFILTER) {
      candidates.push(i);
      candidateMass += weights[i]!;
    }
  }
  const needed = topP * total;
  if (candidateMass < needed) {
    candidates = Array.from(weights.keys());
  }
  candidates.sort((x, y) => weights[y]! - weights[x]! || x - y);
  let kept = 0;
  let keptMass = 0;
  while (kept < candidates.length) {
    keptMass += weights[candidates[kept]!]!;
    kept++;
    if (keptMass >= needed) break;
  }
  // The draw walks the nucleus in token order, not in order of weight: where many tokens weigh
  // nearly the same, the order of weight turns on the last bits of the logits, which differ
  // slightly with what the sequence was batched with, and the same draw would land elsewhere.
  const cutoff = weights[candidates[kept - 1]!]!;
  let ties = kept;
  for (let k = 0; k < kept; k++) if (weights[candidates[k]!]! > cutoff) ties--;
  let target = rng.next() * keptMass;
  let last = candidates[0]!;
  for (let i = 0; i < weights.length; i++) {
    const weight = weights[i]!;
    if (weight < cutoff || (weight === cutoff && ties-- <= 0)) continue;
    last = i;
    target -= weight;
    if (target < 0) return i;
  }
  return last;
}
