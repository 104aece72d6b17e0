/** Log-probabilities of tokens under the model's own distribution. */
import type { TokenLogprob } from '../protocol.js';

/** log Σ exp(logits), computed stably. */
export function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return max + Math.log(sum);
}

/** The `k` largest logits as [token id, logit], largest first (lower id first on ties). */
export function topLogits(logits: Float32Array, k: number): [number, number][] {
  const top: [number, number][] = [];
  if (k <= 0) return top;
  for (let id = 0; id < logits.length; id++) {
    const value = logits[id]!;
    if (top.length === k && value <= top[k - 1]![1]) continue;
    let at = top.length;
    while (at > 0 && top[at - 1]![1] < value) at--;
    top.splice(at, 0, [id, value]);
    if (top.length > k) top.pop();
  }
  return top;
}


/** Log-probabilities under the model's own distribution (temperature 1, no penalties). */
export function tokenLogprob(logits: Float32Array, tokenId: number, topCount: number): TokenLogprob {
  const lse = logSumExp(logits);
  return {
    logprob: logits[tokenId]! - lse,
    top: topLogits(logits, topCount).map(([id, value]) => [id, value - lse]),
  };
}
