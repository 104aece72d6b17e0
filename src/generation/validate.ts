import type { GrammarSpec } from '../grammar/grammar-spec.js';
import type { ChatMessage } from '../model/chat-template.js';
import { ChatTemplateError } from '../model/chat-template.js';
import type { LoadedModel } from '../model/model.js';
import type { ChatRenderOptions, TooLong } from '../preprocess/protocol.js';
import { invalidRequest, limitExceeded, modelNotFound, serverBusy } from '../errors.js';
import { checkLimits, checkMessageCount, checkPromptCount } from './limits.js';
import { stopStrings, type ChatCompletionRequest, type ChatRequestMessage, type CompletionRequest } from '../openai/schemas.js';
import type { GenerationPlan, ServingContext } from './run.js';
import { planOutput, type OutputPlan } from './output-plan.js';
import { checkJsonDepth } from '../openai/parse-body.js';
import type { TaskOwner } from '../preprocess/preprocessor.js';
import type { RequestScope } from './scope.js';
import { TEMPLATE_VARIABLES, type ChatTools, type ChatToolCall } from '../model/chat-template.js';

/**
 * From a parsed body to one validated request: the model, the server's limits, the prompts as
 * token ids that fit the context, and the settings the engine runs with, taking each from the
 * request, else the model's generation_config.json, else OpenAI's default. Everything a request can
 * be refused for (400, 404, 429) is found here, before any work is queued for it.
 */

/** A request checked and ready to run, with what its answer needs; nothing changes it afterwards. */
export type ValidatedRequest = Readonly<
  GenerationPlan & {
    /** Each prompt as text (for `echo`). */
    promptTexts: readonly string[];
    echo: boolean;
    /** Alternatives reported per token; undefined: no log-probabilities. */
    logprobs: number | undefined;
    stream: boolean;
    includeUsage: boolean;
    /** What response_format and tools ask of the output (chat only). */
    output: OutputPlan;
  }
>;

/** OpenAI's defaults for max_tokens: 16 on the legacy completions endpoint; on chat, what the context leaves. */
const DEFAULT_MAX_TOKENS = { completions: 16, chat: Number.POSITIVE_INFINITY };

export interface SamplingFields {
  model: string;
  n?: number | null;
  /** The stop strings, as a list. */
  stop: string[];
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

export function checkModel(model: LoadedModel, requested: string): void {
  if (requested !== model.id && !model.aliases.includes(requested)) throw modelNotFound(requested);
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
export async function encodePrompts({ model, preprocessor }: ServingContext, texts: readonly string[], promptParam: string, owner: TaskOwner, addSpecialTokens = true): Promise<number[][]> {
  const context = model.config.contextLength;
  for (const text of texts) {
    const atLeastTokens = model.tokenizer.minimumTokens(text);
    if (atLeastTokens >= context) throw promptTooLong(context, promptParam, atLeast({ atLeastTokens, characters: text.length }));
  }
  return preprocessor.encode(
    texts,
    addSpecialTokens,
    (ids) => {
      if (ids.length >= context) throw promptTooLong(context, promptParam, `${ids.length} tokens`);
    },
    owner,
  );
}

/** Token ids of a conversation rendered with the model's chat template, off the HTTP thread; it must leave room in the context for a reply. */
export async function encodeChat(
  { model, preprocessor }: ServingContext,
  messages: readonly ChatMessage[],
  tools: ChatTools | undefined,
  owner: TaskOwner,
  render?: ChatRenderOptions,
): Promise<number[]> {
  const context = model.config.contextLength;
  let prompt;
  try {
    prompt = await preprocessor.chat(messages, context, tools, render, owner);
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
  grammar?: GrammarSpec;
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
  scope: RequestScope,
): GenerationPlan {
  const { model, engine } = context;
  const { maxTokens: maxTokensLimit } = context.limits;
  const budget = maxTokensLimit > 0 ? { ...options.budget, default: Math.min(options.budget.default, maxTokensLimit) } : options.budget;
  const maxTokens = Math.min(...prompts.map((ids) => checkContext(model, ids.length, budget)));
  const n = fields.n ?? 1;
  const bestOf = options.bestOf ?? n;
  if (bestOf < n) throw invalidRequest(`'best_of' (${bestOf}) must be at least 'n' (${n}).`, 'best_of', 'invalid_value');
  const sequences = prompts.length * bestOf;
  if (sequences > engine.capacity) {
    // Even an idle server could not take it: a 429 would have clients retry forever.
    const param = bestOf > n ? 'best_of' : n > 1 ? 'n' : 'prompt';
    const shape = prompts.length > 1 ? `${prompts.length} prompts × ${bestOf} choices` : `${bestOf} choices`;
    throw limitExceeded(param, `This request needs ${sequences} sequences (${shape}); this server runs and queues at most ${engine.capacity} at once`, 'max-batch plus --max-queue');
  }
  if (!engine.hasRoomFor(sequences)) throw serverBusy();
  // Ranking by mean log-probability needs each token's log-probability.
  const logprobs = options.logprobs ?? (bestOf > n ? 0 : undefined);
  return {
    prompts,
    n,
    bestOf,
    request: {
      group: engine.newGroup(),
      cachePartition: scope.cachePartition,
      maxTokens,
      temperature: fields.temperature ?? model.samplingDefaults.temperature,
      topP: fields.top_p ?? model.samplingDefaults.topP,
      ...(fields.seed !== null && fields.seed !== undefined && { seed: fields.seed }),
      stopTokenIds: model.config.eosTokenIds,
      stop: fields.stop,
      presencePenalty: fields.presence_penalty ?? 0,
      frequencyPenalty: fields.frequency_penalty ?? 0,
      logitBias: logitBiasPairs(model, fields.logit_bias),
      ...(logprobs !== undefined && { logprobs }),
      ...(options.promptLogprobs !== undefined && { promptLogprobs: options.promptLogprobs }),
      ...(options.grammar && { grammar: options.grammar }),
    },
  };
}

/** OpenAI's rule: `stream_options` only with `stream: true`. */
function checkStreamOptions(body: { stream?: boolean | null; stream_options?: unknown }): void {
  if (body.stream_options !== null && body.stream_options !== undefined && !body.stream) {
    throw invalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options', 'invalid_value');
  }
}

const unsupported = (param: string, what = `'${param}'`) =>
  invalidRequest(`${what} is not supported by this server (yet).`, param, 'unsupported_parameter');

/** The four forms of `prompt`: text, texts, token ids, lists of token ids; as ids, with their text. */
async function completionPrompts(context: ServingContext, prompt: CompletionRequest['prompt'], owner: TaskOwner): Promise<{ ids: number[]; text: string }[]> {
  const { model } = context;
  const fromIds = (ids: number[]) => {
    checkTokenIds(model, ids, 'prompt');
    return { ids, text: model.tokenizer.decode(ids) };
  };
  const fromTexts = async (texts: string[]) => {
    const ids = await encodePrompts(context, texts, 'prompt', owner);
    return texts.map((text, index) => ({ ids: ids[index]!, text }));
  };
  if (typeof prompt === 'string') return fromTexts([prompt]);
  if (prompt.every((item): item is string => typeof item === 'string')) return fromTexts(prompt);
  if (prompt.every((item): item is number => typeof item === 'number')) return [fromIds(prompt)];
  return (prompt as number[][]).map(fromIds);
}

/** `POST /v1/completions`. */
export async function validateCompletion(context: ServingContext, body: CompletionRequest, scope: RequestScope): Promise<ValidatedRequest> {
  const { model, limits } = context;
  checkModel(model, body.model);
  if (body.suffix) throw invalidRequest("'suffix' is not supported by this server.", 'suffix', 'unsupported_parameter');
  checkStreamOptions(body);
  const fields = { ...body, stop: stopStrings(body.stop) };
  checkLimits(fields, limits, { value: body.max_tokens, param: 'max_tokens' });
  checkPromptCount(Array.isArray(body.prompt) && typeof body.prompt[0] !== 'number' ? body.prompt.length : 1, limits);
  if (body.max_tokens === 0 && !body.echo) {
    throw invalidRequest("'max_tokens' may be 0 only with 'echo', to score the prompt without generating.", 'max_tokens', 'invalid_value');
  }
  const n = body.n ?? 1;
  if (body.stream && body.best_of && body.best_of > n) {
    throw invalidRequest("'best_of' greater than 'n' cannot be used with 'stream'.", 'best_of', 'unsupported_value');
  }
  const prompts = await completionPrompts(context, body.prompt, scope);
  const logprobs = body.logprobs ?? undefined;
  const echo = !!body.echo;
  const plan = planGeneration(context, prompts.map((prompt) => prompt.ids), fields, {
    budget: { requested: body.max_tokens, default: DEFAULT_MAX_TOKENS.completions, param: 'max_tokens', promptParam: 'prompt' },
    ...(logprobs !== undefined && { logprobs }),
    ...(echo && logprobs !== undefined && { promptLogprobs: logprobs }),
    ...(body.best_of !== null && body.best_of !== undefined && { bestOf: body.best_of }),
  }, scope);
  return {
    ...plan,
    promptTexts: prompts.map((prompt) => prompt.text),
    echo,
    logprobs,
    stream: !!body.stream,
    includeUsage: !!body.stream_options?.include_usage,
    output: {},
  };
}

/** Fields of OpenAI's chat API that this server cannot honour: refused rather than ignored. */
function refuseUnsupported(body: ChatCompletionRequest): void {
  for (const field of ['functions', 'function_call', 'audio'] as const) {
    if (body[field] !== undefined && body[field] !== null) throw unsupported(field);
  }
  if (body.top_logprobs !== null && body.top_logprobs !== undefined && !body.logprobs) {
    throw invalidRequest("'top_logprobs' requires 'logprobs' to be true.", 'top_logprobs', 'invalid_value');
  }
}

/** `chat_template_kwargs`, refused when they name one of the template's own variables (a 400 naming it). */
export function templateKwargs(kwargs: Record<string, unknown> | null | undefined): Record<string, unknown> | undefined {
  if (!kwargs) return undefined;
  for (const name of TEMPLATE_VARIABLES) {
    if (Object.hasOwn(kwargs, name)) {
      throw invalidRequest(
        `'chat_template_kwargs.${name}' cannot be set: the server gives the template '${name}' itself${name === 'tools' ? " (send 'tools' in the request instead)" : name === 'messages' ? " (send 'messages' in the request instead)" : ''}.`,
        `chat_template_kwargs.${name}`,
        'invalid_value',
      );
    }
  }
  return kwargs;
}

/** Text parts joined into one string. */
function contentText(content: string | { type: string; text?: string }[] | null | undefined, param: string): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content
    .map((part, partIndex) => {
      const partParam = `${param}[${partIndex}]`;
      if (part.type !== 'text') throw unsupported(`${partParam}.type`, `Content of type '${part.type}'`);
      if (typeof part.text !== 'string') throw invalidRequest(`Missing required parameter: '${partParam}.text'.`, `${partParam}.text`, 'missing_required_parameter');
      return part.text;
    })
    .join('');
}

/**
 * A call of an earlier assistant message, as templates read it: arguments as an object where they
 * are JSON (no deeper than the body may nest, counted from the arguments' own root).
 */
function templateToolCall(call: { id: string; function: { name: string; arguments: string } }, param: string, maxJsonDepth: number): ChatToolCall {
  let args: unknown = call.function.arguments;
  try {
    args = JSON.parse(call.function.arguments);
  } catch {
    // Kept as the text it is.
  }
  checkJsonDepth(args, maxJsonDepth, param);
  return { id: call.id, type: 'function', function: { name: call.function.name, arguments: args } };
}

/** A message as the chat template sees it: text parts joined, `developer` as `system`, tool calls with their arguments parsed. */
export function templateMessage(message: ChatRequestMessage, index: number, maxJsonDepth: number): ChatMessage {
  const content = contentText(message.content, `messages[${index}].content`);
  if (message.role === 'tool') return { role: 'tool', content, tool_call_id: message.tool_call_id };
  if (message.role === 'assistant') {
    if ((message.content === null || message.content === undefined) && !message.tool_calls?.length) {
      throw invalidRequest(`Invalid value for 'messages[${index}].content': an assistant message needs content or tool_calls.`, `messages[${index}].content`, 'invalid_value');
    }
    return {
      role: 'assistant',
      content,
      ...(message.name !== undefined && { name: message.name }),
      ...(message.tool_calls?.length && { tool_calls: message.tool_calls.map((call, callIndex) => templateToolCall(call, `messages[${index}].tool_calls[${callIndex}].function.arguments`, maxJsonDepth)) }),
    };
  }
  return {
    role: message.role === 'developer' ? 'system' : message.role,
    content,
    ...(message.name !== undefined && { name: message.name }),
  };
}

/** `POST /v1/chat/completions`. */
export async function validateChat(context: ServingContext, body: ChatCompletionRequest, scope: RequestScope): Promise<ValidatedRequest> {
  const { model, limits } = context;
  checkModel(model, body.model);
  refuseUnsupported(body);
  checkStreamOptions(body);
  const useCompletionTokens = body.max_completion_tokens !== null && body.max_completion_tokens !== undefined;
  const maxTokensParam = useCompletionTokens ? 'max_completion_tokens' : 'max_tokens';
  const requested = useCompletionTokens ? body.max_completion_tokens : body.max_tokens;
  const fields = { ...body, stop: stopStrings(body.stop) };
  checkLimits(fields, limits, { value: requested, param: maxTokensParam });
  checkMessageCount(body.messages.length, limits);
  const messages = body.messages.map((message, index) => templateMessage(message, index, limits.maxJsonDepth));
  const kwargs = templateKwargs(body.chat_template_kwargs);
  const output = await planOutput(context, body, scope);
  const promptIds = await encodeChat(context, messages, output.templateTools, scope, kwargs && { kwargs });
  const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : undefined;
  const plan = planGeneration(context, [promptIds], fields, {
    budget: { requested, default: DEFAULT_MAX_TOKENS.chat, param: maxTokensParam, promptParam: 'messages' },
    ...(logprobs !== undefined && { logprobs }),
    ...(output.grammar && { grammar: output.grammar }),
  }, scope);
  return { ...plan, promptTexts: [], echo: false, logprobs, stream: !!body.stream, includeUsage: !!body.stream_options?.include_usage, output };
}
