import type { RequestLimits } from '../config.js';
import { limitExceeded } from '../errors.js';

/** The fields of a request that the server's limits bound. */
export interface LimitedFields {
  n?: number | null;
  best_of?: number | null;
  /** The stop strings, as a list. */
  stop: readonly string[];
}

function atMost(value: number, limit: number, param: string, what: string, flag: string): void {
  if (value > limit) throw limitExceeded(param, `'${param}' asks for ${value} ${what}; at most ${limit} are allowed`, flag);
}

/** Checks a request against the server's limits before any work is done for it. */
export function checkLimits(fields: LimitedFields, limits: RequestLimits, maxTokens: { value: number | null | undefined; param: string }): void {
  atMost(fields.n ?? 1, limits.maxN, 'n', 'choices', 'max-n');
  atMost(fields.best_of ?? 1, limits.maxN, 'best_of', 'candidates', 'max-n');
  atMost(fields.stop.length, limits.maxStop, 'stop', 'stop strings', 'max-stop');
  const longest = Math.max(0, ...fields.stop.map((stop) => stop.length));
  atMost(longest, limits.maxStopLength, 'stop', 'characters in a stop string', 'max-stop-length');
  if (limits.maxTokens > 0 && maxTokens.value) atMost(maxTokens.value, limits.maxTokens, maxTokens.param, 'tokens', 'max-tokens-limit');
}

export const checkPromptCount = (count: number, limits: RequestLimits) => atMost(count, limits.maxPrompts, 'prompt', 'prompts', 'max-prompts');

export const checkMessageCount = (count: number, limits: RequestLimits) => atMost(count, limits.maxMessages, 'messages', 'messages', 'max-messages');
