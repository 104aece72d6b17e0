import type { GeneratedToken } from '../generation/text-generation.js';

/** Log-probabilities in the shapes of the two endpoints, from tokens spelled in context. */

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/**
 * The legacy shape of up to `logprobs` + 1 alternatives per token, the sampled token always
 * among them under its own text (where two tokens spell alike, the sampled one's value is kept).
 */
function topByText(token: GeneratedToken): Record<string, number> | null {
  if (!token.top || token.logprob === undefined) return null;
  const top: Record<string, number> = {};
  for (const alternative of token.top) if (!(alternative.text in top)) top[alternative.text] = alternative.logprob;
  top[token.text] = token.logprob;
  return top;
}

/** Legacy completions' logprobs; `base` is where the text the tokens' offsets count from starts in the choice's text. */
export function completionLogprobs(tokens: readonly GeneratedToken[], base = 0): CompletionLogprobs {
  return {
    tokens: tokens.map((token) => token.text),
    token_logprobs: tokens.map((token) => token.logprob ?? null),
    top_logprobs: tokens.map(topByText),
    text_offset: tokens.map((token) => base + token.offset),
  };
}

/** Two lists of logprobs one after the other. */
export function concatLogprobs(first: CompletionLogprobs, second: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...first.tokens, ...second.tokens],
    token_logprobs: [...first.token_logprobs, ...second.token_logprobs],
    top_logprobs: [...first.top_logprobs, ...second.top_logprobs],
    text_offset: [...first.text_offset, ...second.text_offset],
  };
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** Chat's `logprobs.content`. */
export function chatLogprobs(tokens: readonly GeneratedToken[]): { content: ChatTokenLogprob[]; refusal: null } {
  const content = tokens
    .filter((token) => token.logprob !== undefined)
    .map((token) => ({
      token: token.text,
      logprob: token.logprob!,
      bytes: token.bytes,
      top_logprobs: (token.top ?? []).map((alternative) => ({ token: alternative.text, logprob: alternative.logprob, bytes: alternative.bytes })),
    }));
  return { content, refusal: null };
}
