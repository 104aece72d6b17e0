/** Logit processing done per token in the engine: OpenAI's penalties and biases, and log-probabilities. */
import type { TokenLogprob } from '../protocol.js';

export interface LogitAdjustments {
  /** Subtracted once from every token that has appeared in the completion. */
  presencePenalty: number;
  /** Subtracted from a token's logit for each time it has appeared in the completion. */
  frequencyPenalty: number;
  /** Added to the logits of the given token ids; −100 bans a token, 100 all but forces it. */
  logitBias: readonly (readonly [number, number])[];
}

export function hasAdjustments(adjustments: LogitAdjustments): boolean {
  return adjustments.presencePenalty !== 0 || adjustments.frequencyPenalty !== 0 || adjustments.logitBias.length > 0;
}

/** OpenAI's formula: logit[j] −= count[j] × frequency_penalty + (count[j] > 0) × presence_penalty; then the bias. */
export function adjustLogits(logits: Float32Array, adjustments: LogitAdjustments, counts: ReadonlyMap<number, number>): void {
  const { presencePenalty, frequencyPenalty } = adjustments;
  if (presencePenalty !== 0 || frequencyPenalty !== 0) {
    for (const [token, count] of counts) logits[token]! -= count * frequencyPenalty + presencePenalty;
  }
  for (const [token, bias] of adjustments.logitBias) {
    if (token >= 0 && token < logits.length) logits[token]! += bias;
  }
}

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
