import { invalidRequest, limitExceeded, serverBusy } from '../errors.js';
import type { PromptRequest, ReasoningGate } from '../engine/protocol.js';
import type { LoadedModel } from '../model/model.js';
import { checkLimits } from './limits.js';
import { planOutput, type OutputPlan } from './output-plan.js';
import { checkTokenIds, encodeChat, encodePrompts, promptTooLong } from './prompts.js';
import type { GenerationRequest, ReportingRequest } from './request.js';
import type { ServingContext } from './context.js';
import type { RequestScope } from './scope.js';
import { opensReasoning, type ReasoningPlan } from '../reasoning/formats.js';

/**
 * From a generation request to one validated request: the server's limits, the prompts as token ids
 * that fit the context, and the settings the engine runs with, each taken from the request, else the
 * model's generation_config.json, else the server's default (here, and nowhere else). Everything a
 * request can be refused for (400, 429) is found here, before any work is queued for it.
 */

/** A request checked and ready to run, with what its answer needs; nothing changes it afterwards. */
export interface ValidatedRequest {
  /** Token ids of each prompt; a request may carry several. */
  readonly prompts: readonly number[][];
  /** Each prompt as text (for `echo`; empty for a conversation). */
  readonly promptTexts: readonly string[];
  /** Choices returned per prompt. */
  readonly n: number;
  /** Sequences generated per prompt; the `n` with the highest mean log-probability are returned. */
  readonly bestOf: number;
  /** What the engine runs each prompt with, sampling and stopping: the engine's message less the prompt. */
  readonly engine: Readonly<Omit<PromptRequest, 'promptIds'>>;
  /** Stop strings, matched on the text on this thread. */
  readonly stop: readonly string[];
  readonly reporting: Readonly<ReportingRequest>;
  /** What response_format and tools ask of the output. */
  readonly output: OutputPlan;
  /** A chat reply's thinking, told apart from its answer: for a model that thinks aloud (a grammar then shapes the answer, after the thinking). */
  readonly reasoning?: ReasoningPlan;
}

/** Tokens at the prompt's end that are enough to hold a generation prompt's opening marker. */
const PROMPT_END_TOKENS = 16;

/** How the reply of a chat request is read, for a model that thinks aloud. */
function reasoningPlan(model: LoadedModel, request: GenerationRequest, output: OutputPlan, prompt: readonly number[]): ReasoningPlan | undefined {
  const format = model.reasoningFormat;
  if (!format || request.prompts.kind !== 'chat') return undefined;
  return { format, startsInside: opensReasoning(model.tokenizer.decode(prompt.slice(-PROMPT_END_TOKENS), false), format) };
}

/** A marker's token, where the tokenizer has it as one. */
function markerToken(model: LoadedModel, marker: string): number | undefined {
  const ids = model.tokenizer.encode(marker, false);
  return ids.length === 1 ? ids[0] : undefined;
}

/** What the engine needs to apply a grammar only after the thinking. */
function reasoningGate(model: LoadedModel, { format, startsInside }: ReasoningPlan): ReasoningGate {
  const endTokenId = markerToken(model, format.end);
  const startTokenId = markerToken(model, format.start);
  return { startsInside, end: format.end, ...(endTokenId !== undefined && { endTokenId }), ...(startTokenId !== undefined && { startTokenId }) };
}

/** The server's defaults where neither the request nor generation_config.json says. */
const SERVER_DEFAULTS = { presencePenalty: 0, frequencyPenalty: 0 };

function logitBiasPairs(model: LoadedModel, bias: Record<string, number> | undefined): [number, number][] {
  const pairs = Object.entries(bias ?? {}).map(([id, value]) => [Number(id), value] as [number, number]);
  checkTokenIds(model, pairs.map(([id]) => id), 'logit_bias');
  return pairs;
}

/** The prompts as token ids, with their text. */
async function encodeInput(context: ServingContext, request: GenerationRequest, output: OutputPlan, scope: RequestScope): Promise<{ ids: number[]; text: string }[]> {
  const { model } = context;
  const { prompts, fields } = request;
  if (prompts.kind === 'chat') {
    const render = prompts.templateKwargs && { kwargs: prompts.templateKwargs };
    return [{ ids: await encodeChat(context, prompts.messages, output.templateTools, scope, render, fields.prompt), text: '' }];
  }
  if (prompts.kind === 'texts') {
    const ids = await encodePrompts(context, prompts.texts, fields.prompt, scope);
    return prompts.texts.map((text, index) => ({ ids: ids[index]!, text }));
  }
  return prompts.ids.map((ids) => {
    checkTokenIds(model, ids, fields.prompt);
    return { ids: [...ids], text: model.tokenizer.decode(ids) };
  });
}

/**
 * The tokens a reply may have: what the client asked for (refused when the context cannot hold it),
 * else the endpoint's default, cut to what the context leaves and to `--max-tokens-limit`.
 */
function replyBudget(context: ServingContext, request: GenerationRequest, promptLength: number): number {
  const contextLength = context.model.config.contextLength;
  const { prompt: promptParam, maxTokens: param } = request.fields;
  if (promptLength === 0) throw invalidRequest(`'${promptParam}' must not be empty.`, promptParam, 'invalid_value');
  if (promptLength >= contextLength) throw promptTooLong(contextLength, promptParam, `${promptLength} tokens`);
  const room = contextLength - promptLength;
  const requested = request.stopping.maxTokens;
  if (requested !== undefined && requested > room) {
    throw invalidRequest(
      `This model's maximum context length is ${contextLength} tokens. However, you requested ${promptLength + requested} tokens (${promptLength} in the ${promptParam}, ${requested} in the completion). Please reduce the length of the ${promptParam} or completion.`,
      param,
      'context_length_exceeded',
    );
  }
  return requested ?? Math.min(request.stopping.defaultMaxTokens ?? room, context.limits.maxTokens ?? room, room);
}

/** Checks the sequences a request needs against the engine's room: never (400), or not now (429). */
function admit(context: ServingContext, prompts: number, n: number, bestOf: number): void {
  const { engine } = context;
  const sequences = prompts * bestOf;
  if (sequences > engine.capacity) {
    // Even an idle server could not take it: a 429 would have clients retry forever.
    const param = bestOf > n ? 'best_of' : n > 1 ? 'n' : 'prompt';
    const shape = prompts > 1 ? `${prompts} prompts × ${bestOf} choices` : `${bestOf} choices`;
    throw limitExceeded(param, `This request needs ${sequences} sequences (${shape}); this server runs and queues at most ${engine.capacity} at once`, 'max-batch plus --max-queue');
  }
  if (!engine.hasRoomFor(sequences)) throw serverBusy();
}

/** Validates a request of any endpoint (see GenerationRequest) and resolves its defaults. */
export async function validateGeneration(context: ServingContext, request: GenerationRequest, scope: RequestScope): Promise<ValidatedRequest> {
  const { model, engine } = context;
  checkLimits(request, context.limits);
  const output = await planOutput(context, request.output, request.fields, scope);
  const prompts = await encodeInput(context, request, output, scope);
  const maxTokens = Math.min(...prompts.map(({ ids }) => replyBudget(context, request, ids.length)));
  const n = request.choices.n ?? 1;
  const bestOf = request.choices.bestOf ?? n;
  if (bestOf < n) throw invalidRequest(`'best_of' (${bestOf}) must be at least 'n' (${n}).`, 'best_of', 'invalid_value');
  admit(context, prompts.length, n, bestOf);
  const { sampling, reporting } = request;
  // Ranking by mean log-probability needs each token's log-probability.
  const logprobs = reporting.logprobs ?? (bestOf > n ? 0 : undefined);
  const topK = sampling.topK ?? model.samplingDefaults.topK;
  const reasoning = reasoningPlan(model, request, output, prompts[0]!.ids);
  return {
    prompts: prompts.map((prompt) => prompt.ids),
    promptTexts: request.prompts.kind === 'chat' ? [] : prompts.map((prompt) => prompt.text),
    n,
    bestOf,
    engine: {
      group: engine.newGroup(),
      cachePartition: scope.cachePartition,
      maxTokens,
      temperature: sampling.temperature ?? model.samplingDefaults.temperature,
      topP: sampling.topP ?? model.samplingDefaults.topP,
      ...(topK > 0 && { topK }),
      ...(sampling.seed !== undefined && { seed: sampling.seed }),
      stopTokenIds: model.config.eosTokenIds,
      presencePenalty: sampling.presencePenalty ?? SERVER_DEFAULTS.presencePenalty,
      frequencyPenalty: sampling.frequencyPenalty ?? SERVER_DEFAULTS.frequencyPenalty,
      logitBias: logitBiasPairs(model, sampling.logitBias),
      ...(logprobs !== undefined && { logprobs }),
      ...(reporting.echo && reporting.logprobs !== undefined && { promptLogprobs: reporting.logprobs }),
      ...(output.grammar && { grammar: output.grammar }),
      ...(output.grammar && reasoning && { reasoning: reasoningGate(model, reasoning) }),
    },
    stop: request.stopping.stop,
    reporting,
    output,
    ...(reasoning && { reasoning }),
  };
}
