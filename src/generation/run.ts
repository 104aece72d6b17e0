import type { FinishReason, TokenLogprob } from '../engine/protocol.js';
import type { ValidatedRequest } from './validate.js';
import { generateText, type GeneratedToken, type TextChunk } from './text-generation.js';
import { OpenAIError } from '../errors.js';
import type { ServingContext } from './context.js';

/** What the routes share: running a validated request's choices, side by side, and counting its usage. */

export interface ChoiceOutcome {
  /** Position in `choices`: prompt index × n + choice. */
  index: number;
  promptIndex: number;
  text: string;
  finishReason: FinishReason;
  /** The stop string that ended the text, when one did. */
  stopString?: string;
  completionTokens: number;
  tokens: GeneratedToken[];
  promptLogprobs?: TokenLogprob[];
  /** Prompt tokens whose KV came from the prefix cache. */
  cachedTokens: number;
}

/** What a request's generation counts for its usage. */
export interface GenerationCounts {
  /** Tokens generated, best_of candidates included. */
  completionTokens: number;
  /** Prompt tokens whose KV came from the prefix cache (each prompt counted once). */
  cachedTokens: number;
}

/** What the logs say of a planned request (never the prompt text). */
export const planSummary = (plan: ValidatedRequest) => ({
  prompts: plan.prompts.length,
  promptTokens: promptTokenCount(plan),
  n: plan.n,
  bestOf: plan.bestOf,
  maxTokens: plan.engine.maxTokens,
  stream: plan.reporting.stream,
});

export interface ChoiceListener {
  chunk?(index: number, chunk: TextChunk): void;
  finish?(outcome: ChoiceOutcome): void;
}

function meanLogprob(outcome: ChoiceOutcome): number {
  const scored = outcome.tokens.filter((token) => token.logprob !== undefined);
  if (scored.length === 0) return -Infinity;
  return scored.reduce((sum, token) => sum + token.logprob!, 0) / scored.length;
}

/**
 * Runs every sequence of a plan side by side (the engine batches them). Listeners hear of choices
 * as they stream, which only makes sense when no best_of ranking happens afterwards.
 */
export async function runGeneration(
  { engine, model, observer }: ServingContext,
  plan: ValidatedRequest,
  signal: AbortSignal,
  listener: ChoiceListener = {},
): Promise<{ choices: ChoiceOutcome[] } & GenerationCounts> {
  // Every prompt in one submission: the engine starts them together, prefills each once and forks it into its candidates.
  const streams = engine.generate(
    plan.prompts.map((promptIds, promptIndex) => ({
      request: { ...plan.engine, promptIds },
      seedStreams: Array.from({ length: plan.bestOf }, (_, candidate) => promptIndex * plan.bestOf + candidate),
    })),
    signal,
  );
  const runOne = async (promptIndex: number, candidate: number): Promise<ChoiceOutcome> => {
    const index = promptIndex * plan.n + candidate;
    const promptIds = plan.prompts[promptIndex]!;
    const generator = generateText(streams[promptIndex]![candidate]!, model.tokenizer, { promptIds, stopTokenIds: plan.engine.stopTokenIds, stop: plan.stop });
    let last = performance.now();
    let first = true;
    let text = '';
    const tokens: GeneratedToken[] = [];
    let promptLogprobs: TokenLogprob[] | undefined;
    for (;;) {
      const step = await generator.next();
      if (step.done) {
        const outcome = { index, promptIndex, text, tokens, ...step.value, ...(promptLogprobs && { promptLogprobs }) };
        listener.finish?.(outcome);
        return outcome;
      }
      const now = performance.now();
      if (first) observer.firstToken((now - last) / 1000);
      else observer.interToken((now - last) / 1000);
      first = false;
      last = now;
      text += step.value.text;
      tokens.push(...step.value.tokens);
      promptLogprobs ??= step.value.promptLogprobs;
      listener.chunk?.(index, step.value);
    }
  };
  const all = await Promise.all(
    plan.prompts.flatMap((_, promptIndex) => Array.from({ length: plan.bestOf }, (_, candidate) => runOne(promptIndex, candidate))),
  );
  const completionTokens = all.reduce((sum, outcome) => sum + outcome.completionTokens, 0);
  // A prompt's candidates share its prefill, so the first one's count is the prompt's.
  const cachedTokens = all.reduce((sum, outcome, i) => sum + (i % plan.bestOf === 0 ? outcome.cachedTokens : 0), 0);
  observer.finished(promptTokenCount(plan), completionTokens, cachedTokens);
  // A request past its deadline ends with the deadline's error; a client that left gets nothing.
  if (signal.aborted && signal.reason instanceof OpenAIError) throw signal.reason;
  if (plan.bestOf === plan.n) return { choices: all, completionTokens, cachedTokens };
  const choices = plan.prompts.flatMap((_, promptIndex) =>
    all
      .filter((outcome) => outcome.promptIndex === promptIndex)
      .sort((a, b) => meanLogprob(b) - meanLogprob(a))
      .slice(0, plan.n)
      .map((outcome, rank) => ({ ...outcome, index: promptIndex * plan.n + rank })),
  );
  return { choices, completionTokens, cachedTokens };
}

const promptTokenCount = (plan: ValidatedRequest) => plan.prompts.reduce((sum, ids) => sum + ids.length, 0);

export function usage(plan: ValidatedRequest, { completionTokens, cachedTokens }: GenerationCounts) {
  const promptTokens = promptTokenCount(plan);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens, prompt_tokens_details: { cached_tokens: cachedTokens } };
}

export const createdNow = () => Math.floor(Date.now() / 1000);
