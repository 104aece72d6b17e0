import type { RequestLimits } from '../config.js';
import type { Engine } from '../engine/client/engine.js';
import type { FinishReason, PromptRequest, TokenLogprob } from '../engine/protocol.js';
import { generateText, type GeneratedToken, type TextChunk } from '../engine/client/text-generation.js';
import { ChatTemplateError, type ChatMessage } from '../model/chat-template.js';
import type { LoadedModel } from '../model/model.js';
import type { Preprocessor } from '../preprocess/preprocessor.js';
import type { TooLong } from '../preprocess/protocol.js';
import { invalidRequest, modelNotFound, OpenAIError, serverBusy } from './errors.js';
import { stopStrings } from './schemas.js';

/** What the routes share: turning validated fields into engine requests and running the choices. */

/** Watches generations for the metrics; times are in seconds. */
export interface GenerationObserver {
  /** From the start of a choice's generation to its first text. */
  firstToken(seconds: number): void;
  /** Between two consecutive pieces of a choice's text. */
  interToken(seconds: number): void;
  finished(promptTokens: number, completionTokens: number): void;
}

/** Everything a route needs to serve the model. */
export interface ServingContext {
  model: LoadedModel;
  /** Tokenizes prompts and renders chat templates off the HTTP thread. */
  preprocessor: Preprocessor;
  engine: Engine;
  /** Identifies the model and the server build that answered. */
  systemFingerprint: string;
  limits: RequestLimits;
  /** 0: no deadline. */
  requestTimeoutMs: number;
  observer: GenerationObserver;
}

export interface SamplingFields {
  model: string;
  n?: number | null;
  stop?: string | string[] | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
}

export interface TokenBudget {
  /** What the client asked for, if anything. */
  requested: number | null | undefined;
  /** Used when nothing was asked for, cut to the room the context leaves. */
  default: number;
  /** The field names that errors point at. */
  param: string;
  promptParam: string;
}

export interface GenerationPlan {
  /** Token ids of each prompt; a request may carry several. */
  prompts: number[][];
  /** Choices returned per prompt. */
  n: number;
  /** Sequences generated per prompt; the `n` with the highest mean log-probability are returned. */
  bestOf: number;
  request: Omit<PromptRequest, 'promptIds'> & { stop: string[] };
}

export interface ChoiceOutcome {
  /** Position in `choices`: prompt index × n + choice. */
  index: number;
  promptIndex: number;
  text: string;
  finishReason: FinishReason;
  completionTokens: number;
  tokens: GeneratedToken[];
  promptLogprobs?: TokenLogprob[];
}

export function checkModel(model: LoadedModel, requested: string): void {
  if (requested !== model.id) throw modelNotFound(requested);
}

export function checkTokenIds(model: LoadedModel, ids: readonly number[], param: string): void {
  const vocab = model.config.vocabSize;
  const bad = ids.find((id) => id >= vocab);
  if (bad !== undefined) {
    throw invalidRequest(`Invalid token id ${bad} in '${param}': the vocabulary has ${vocab} tokens (0 to ${vocab - 1}).`, param, 'invalid_value');
  }
}

function logitBiasPairs(model: LoadedModel, bias: Record<string, number> | null | undefined): [number, number][] {
  const pairs = Object.entries(bias ?? {}).map(([id, value]) => [Number(id), value] as [number, number]);
  checkTokenIds(model, pairs.map(([id]) => id), 'logit_bias');
  return pairs;
}

const promptTooLong = (context: number, promptParam: string, length: string) =>
  invalidRequest(
    `This model's maximum context length is ${context} tokens. However, your ${promptParam} is ${length} long, which leaves no room for a completion. Please reduce the length of the ${promptParam}.`,
    promptParam,
    'context_length_exceeded',
  );

const atLeast = (tooLong: TooLong) => `at least ${tooLong.atLeastTokens} tokens (${tooLong.characters} characters)`;

/**
 * Token ids of prompt texts, tokenized off the HTTP thread. A text that cannot fit the context is
 * refused before it is tokenized where its length tells, else as soon as its ids do; the request's
 * other texts are then left alone.
 */
export async function encodePrompts({ model, preprocessor }: ServingContext, texts: readonly string[], promptParam: string): Promise<number[][]> {
  const context = model.config.contextLength;
  for (const text of texts) {
    const atLeastTokens = model.tokenizer.minimumTokens(text);
    if (atLeastTokens >= context) throw promptTooLong(context, promptParam, atLeast({ atLeastTokens, characters: text.length }));
  }
  return preprocessor.encode(texts, true, (ids) => {
    if (ids.length >= context) throw promptTooLong(context, promptParam, `${ids.length} tokens`);
  });
}

/** Token ids of a conversation rendered with the model's chat template, off the HTTP thread. */
export async function encodeChat({ model, preprocessor }: ServingContext, messages: readonly ChatMessage[]): Promise<number[]> {
  const context = model.config.contextLength;
  let prompt;
  try {
    prompt = await preprocessor.chat(messages, context);
  } catch (err) {
    if (err instanceof ChatTemplateError) throw invalidRequest(`The chat template rejected the messages: ${err.message}`, 'messages', 'invalid_chat_template');
    throw err;
  }
  if ('tooLong' in prompt) throw promptTooLong(context, 'messages', atLeast(prompt.tooLong));
  return prompt.ids;
}

function checkContext(model: LoadedModel, promptLength: number, budget: TokenBudget): number {
  const context = model.config.contextLength;
  const { promptParam } = budget;
  if (promptLength === 0) throw invalidRequest(`'${promptParam}' must not be empty.`, promptParam, 'invalid_value');
  if (promptLength >= context) throw promptTooLong(context, promptParam, `${promptLength} tokens`);
  const room = context - promptLength;
  const requested = budget.requested ?? undefined;
  if (requested !== undefined && requested > room) {
    throw invalidRequest(
      `This model's maximum context length is ${context} tokens. However, you requested ${promptLength + requested} tokens (${promptLength} in the ${promptParam}, ${requested} in the completion). Please reduce the length of the ${promptParam} or completion.`,
      budget.param,
      'context_length_exceeded',
    );
  }
  return requested ?? Math.min(budget.default, room);
}

export interface PlanOptions {
  budget: TokenBudget;
  /** Alternatives per token when log-probabilities are asked for. */
  logprobs?: number;
  promptLogprobs?: number;
  bestOf?: number;
}

/**
 * Plans a request: sampling settings and a token budget that fits the context for every prompt.
 * A request whose sequences do not fit in the batch and the queue is turned away at once (429).
 */
export function planGeneration(
  context: ServingContext,
  prompts: number[][],
  fields: SamplingFields,
  options: PlanOptions,
): GenerationPlan {
  const { model, engine } = context;
  const { maxTokens: maxTokensLimit } = context.limits;
  const budget = maxTokensLimit > 0 ? { ...options.budget, default: Math.min(options.budget.default, maxTokensLimit) } : options.budget;
  const maxTokens = Math.min(...prompts.map((ids) => checkContext(model, ids.length, budget)));
  const n = fields.n ?? 1;
  const bestOf = options.bestOf ?? n;
  if (bestOf < n) throw invalidRequest(`'best_of' (${bestOf}) must be at least 'n' (${n}).`, 'best_of', 'invalid_value');
  if (!engine.hasRoomFor(prompts.length * bestOf)) throw serverBusy();
  // Ranking by mean log-probability needs each token's log-probability.
  const logprobs = options.logprobs ?? (bestOf > n ? 0 : undefined);
  return {
    prompts,
    n,
    bestOf,
    request: {
      group: engine.newGroup(),
      maxTokens,
      temperature: fields.temperature ?? model.samplingDefaults.temperature,
      topP: fields.top_p ?? model.samplingDefaults.topP,
      ...(fields.seed !== null && fields.seed !== undefined && { seed: fields.seed }),
      stopTokenIds: model.config.eosTokenIds,
      stop: stopStrings(fields.stop),
      presencePenalty: fields.presence_penalty ?? 0,
      frequencyPenalty: fields.frequency_penalty ?? 0,
      logitBias: logitBiasPairs(model, fields.logit_bias),
      ...(logprobs !== undefined && { logprobs }),
      ...(options.promptLogprobs !== undefined && { promptLogprobs: options.promptLogprobs }),
    },
  };
}

/** What the logs say of a planned request (never the prompt text). */
export const planSummary = (plan: GenerationPlan, stream: boolean | null | undefined) => ({
  prompts: plan.prompts.length,
  promptTokens: promptTokenCount(plan),
  n: plan.n,
  bestOf: plan.bestOf,
  maxTokens: plan.request.maxTokens,
  stream: !!stream,
});

export interface ChoiceListener {
  chunk?(index: number, chunk: TextChunk): void;
  finish?(outcome: ChoiceOutcome): void;
}

function meanLogprob(outcome: ChoiceOutcome): number {
  const scored = outcome.tokens.filter((token) => token.logprob);
  if (scored.length === 0) return -Infinity;
  return scored.reduce((sum, token) => sum + token.logprob!.logprob, 0) / scored.length;
}

/**
 * Runs every sequence of a plan side by side (the engine batches them). Listeners hear of choices
 * as they stream, which only makes sense when no best_of ranking happens afterwards.
 */
export async function runGeneration(
  { engine, model, observer }: ServingContext,
  plan: GenerationPlan,
  signal: AbortSignal,
  listener: ChoiceListener = {},
): Promise<{ choices: ChoiceOutcome[]; completionTokens: number }> {
  // One submission per prompt: the engine prefills it once and forks it into its candidates.
  const { stop, ...prompt } = plan.request;
  const streams = plan.prompts.map((promptIds, promptIndex) =>
    engine.generate(
      { ...prompt, promptIds },
      Array.from({ length: plan.bestOf }, (_, candidate) => promptIndex * plan.bestOf + candidate),
      signal,
    ),
  );
  const runOne = async (promptIndex: number, candidate: number): Promise<ChoiceOutcome> => {
    const index = promptIndex * plan.n + candidate;
    const promptIds = plan.prompts[promptIndex]!;
    const generator = generateText(streams[promptIndex]![candidate]!, model.tokenizer, { promptIds, stopTokenIds: plan.request.stopTokenIds, stop });
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
  observer.finished(promptTokenCount(plan), completionTokens);
  // A request past its deadline ends with the deadline's error; a client that left gets nothing.
  if (signal.aborted && signal.reason instanceof OpenAIError) throw signal.reason;
  if (plan.bestOf === plan.n) return { choices: all, completionTokens };
  const choices = plan.prompts.flatMap((_, promptIndex) =>
    all
      .filter((outcome) => outcome.promptIndex === promptIndex)
      .sort((a, b) => meanLogprob(b) - meanLogprob(a))
      .slice(0, plan.n)
      .map((outcome, rank) => ({ ...outcome, index: promptIndex * plan.n + rank })),
  );
  return { choices, completionTokens };
}

const promptTokenCount = (plan: GenerationPlan) => plan.prompts.reduce((sum, ids) => sum + ids.length, 0);

export function usage(plan: GenerationPlan, completionTokens: number) {
  const promptTokens = promptTokenCount(plan);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

export const createdNow = () => Math.floor(Date.now() / 1000);
