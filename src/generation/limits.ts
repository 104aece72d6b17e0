import type { RequestLimits } from '../options.js';
import { limitExceeded } from '../errors.js';
import type { GenerationRequest } from './request.js';

function atMost(value: number, limit: number, param: string, what: string, flag: string): void {
  if (value > limit) throw limitExceeded(param, `'${param}' asks for ${value} ${what}; at most ${limit} are allowed`, flag);
}

/** Checks a request against the server's limits before any work is done for it. */
export function checkLimits(request: GenerationRequest, limits: RequestLimits): void {
  const { choices, stopping, prompts, fields } = request;
  atMost(choices.n ?? 1, limits.maxN, 'n', 'choices', 'max-n');
  atMost(choices.bestOf ?? 1, limits.maxN, 'best_of', 'candidates', 'max-n');
  atMost(stopping.stop.length, limits.maxStop, 'stop', 'stop strings', 'max-stop');
  const longest = Math.max(0, ...stopping.stop.map((stop) => stop.length));
  atMost(longest, limits.maxStopLength, 'stop', 'characters in a stop string', 'max-stop-length');
  if (limits.maxTokens !== undefined && stopping.maxTokens) atMost(stopping.maxTokens, limits.maxTokens, fields.maxTokens, 'tokens', 'max-tokens-limit');
  if (prompts.kind === 'chat') checkMessageCount(prompts.messages.length, limits, fields.prompt);
  else atMost(prompts.kind === 'texts' ? prompts.texts.length : prompts.ids.length, limits.maxPrompts, 'prompt', 'prompts', 'max-prompts');
}

export const checkMessageCount = (count: number, limits: RequestLimits, param = 'messages') => atMost(count, limits.maxMessages, param, 'messages', 'max-messages');
