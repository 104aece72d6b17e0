import type { TokenLogprob } from '../engine/protocol.js';
import type { GeneratedToken } from '../engine/client/text-generation.js';
import type { TextTokenizer } from '../model/tokenizer.js';

/** Log-probabilities in the shapes of the two endpoints. */

/** A token as text, special tokens included. */
export const tokenText = (tokenizer: TextTokenizer, id: number) => tokenizer.decode([id], false);

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** One scored token: its id and, except for the first prompt token, its log-probability. */
export interface ScoredToken {
  id: number;
  logprob: TokenLogprob | undefined;
}

/** Legacy completions' logprobs; `offset` is where the first token starts in the choice's text. */
export function completionLogprobs(tokenizer: TextTokenizer, tokens: readonly ScoredToken[], offset: number): CompletionLogprobs {
  const result: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let at = offset;
  for (const token of tokens) {
    const text = tokenText(tokenizer, token.id);
    result.tokens.push(text);
    result.token_logprobs.push(token.logprob?.logprob ?? null);
    result.top_logprobs.push(
      token.logprob ? Object.fromEntries(token.logprob.top.map(([id, logprob]) => [tokenText(tokenizer, id), logprob])) : null,
    );
    result.text_offset.push(at);
    at += text.length;
  }
  return result;
}

/** The prompt's tokens scored for `echo`: the first has no log-probability. */
export function scoredPrompt(promptIds: readonly number[], promptLogprobs: readonly TokenLogprob[] | undefined): ScoredToken[] {
  return promptIds.map((id, i) => ({ id, logprob: i === 0 ? undefined : promptLogprobs?.[i - 1] }));
}

export const scoredTokens = (tokens: readonly GeneratedToken[]): ScoredToken[] => tokens.map((token) => ({ id: token.id, logprob: token.logprob }));

const utf8Bytes = (text: string) => [...Buffer.from(text, 'utf8')];

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** Chat's `logprobs.content`. */
export function chatLogprobs(tokenizer: TextTokenizer, tokens: readonly GeneratedToken[]): { content: ChatTokenLogprob[]; refusal: null } {
  const entry = (id: number, logprob: number) => {
    const token = tokenText(tokenizer, id);
    return { token, logprob, bytes: utf8Bytes(token) };
  };
  const content = tokens
    .filter((token) => token.logprob)
    .map((token) => ({
      ...entry(token.id, token.logprob!.logprob),
      top_logprobs: token.logprob!.top.map(([id, logprob]) => entry(id, logprob)),
    }));
  return { content, refusal: null };
}
