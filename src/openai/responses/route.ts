import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GeneratedToken } from '../../generation/text-generation.js';
import type { FinishReason } from '../../engine/protocol.js';
import type { ParsedToolCall } from '../../tool-calls/formats.js';
import { parseToolCalls } from '../../tool-calls/tool-call-parser.js';
import { ReplyStream, splitReply, type ReplyEvent } from '../../generation/reply-stream.js';
import { toOpenAIError } from '../../errors.js';
import { logFailure } from '../../http/error-handling.js';
import { itemId, toolCallId } from '../ids.js';
import { chatLogprobs } from '../logprobs.js';
import { ResponseRequestSchema } from '../schemas.js';
import { createdNow, planSummary, runGeneration, usage, type GenerationCounts } from '../../generation/run.js';
import { type ServingContext } from '../../generation/context.js';
import { SseStream } from '../../http/sse.js';
import { requestScope, servedContext } from '../../http/request-scope.js';
import type { RequestScope } from '../../generation/scope.js';
import { checkReply, dropsUnfinished } from '../../generation/output-plan.js';
import { validateGeneration, type ValidatedRequest } from '../../generation/validate.js';
import type { ServedModels } from '../../generation/served-models.js';
import { reasoningEffort, refuseUnsupported, responseRequest } from './request.js';
import { parseBody } from '../parse-body.js';

/**
 * `POST /v1/responses`, OpenAI's Responses API, for what a stateless server can do: input as text
 * or items, instructions, sampling, function tools, structured output, logprobs, streaming with the
 * Responses events. A request becomes the chat request it amounts to and runs as chat completions
 * do; errors name the Responses fields. Stored state (`store`, `previous_response_id`, item
 * references) and OpenAI's built-in tools are refused.
 */

interface OutputText {
  type: 'output_text';
  text: string;
  annotations: never[];
  logprobs: ReturnType<typeof chatLogprobs>['content'];
}

type ItemStatus = 'in_progress' | 'completed' | 'incomplete';

type OutputItem =
  /** The thinking of a model that thinks aloud (see --reasoning-parser), before its message. */
  | { type: 'reasoning'; id: string; summary: never[]; content: { type: 'reasoning_text'; text: string }[]; status: ItemStatus }
  | { type: 'message'; id: string; status: ItemStatus; role: 'assistant'; content: OutputText[] }
  | { type: 'function_call'; id: string; call_id: string; name: string; arguments: string; status: ItemStatus };

const outputText = (text: string, logprobs: OutputText['logprobs'] = []): OutputText => ({ type: 'output_text', text, annotations: [], logprobs });

const reasoningItem = (text: string, status: ItemStatus): Extract<OutputItem, { type: 'reasoning' }> => ({
  type: 'reasoning',
  id: itemId('rs'),
  summary: [],
  content: [{ type: 'reasoning_text', text }],
  status,
});

const functionCall = (call: ParsedToolCall, status: 'in_progress' | 'completed' = 'completed'): OutputItem => ({
  type: 'function_call',
  id: itemId('fc'),
  call_id: toolCallId(),
  name: call.name,
  arguments: call.arguments,
  status,
});

export const responseRoutes: FastifyPluginAsync<{ models: ServedModels }> = async (app, { models }) => {
  async function createResponse(request: FastifyRequest, reply: FastifyReply) {
    const body = parseBody(ResponseRequestSchema, request.body);
    refuseUnsupported(body);
    const context = await servedContext(models, body.model, reply);
    const { model } = context;
    const scope = requestScope(request, reply, context);
    const plan = await validateGeneration(context, responseRequest(body, context.limits), scope);
    request.log.info({ ...planSummary(plan), grammar: !!plan.output.grammar, tools: plan.output.tools?.choice ?? 'none' }, 'response');
    request.log.debug({ input: body.input }, 'response input');
    const { output } = plan;
    const { logprobs } = plan.reporting;
    const toolNames = new Set(output.tools?.parameters.keys());
    const logprobsOf = (tokens: readonly GeneratedToken[]) => (logprobs === undefined ? [] : chatLogprobs(tokens).content);

    const id = itemId('resp');
    const createdAt = createdNow();
    /** The response object at one moment: `output` and `usage` as they stand. */
    const snapshot = (items: OutputItem[], finish: FinishReason | undefined, generation: GenerationCounts | undefined, reasoningTokens = 0) => {
      const status = finish === undefined ? 'in_progress' : finish === 'length' ? 'incomplete' : 'completed';
      const counts = generation === undefined ? null : usage(plan, generation);
      return {
        id,
        object: 'response' as const,
        created_at: createdAt,
        status,
        error: null,
        incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
        instructions: body.instructions ?? null,
        max_output_tokens: body.max_output_tokens ?? null,
        model: model.id,
        output: items,
        parallel_tool_calls: body.parallel_tool_calls ?? true,
        previous_response_id: null,
        reasoning: { effort: reasoningEffort(body) ?? null, summary: null },
        store: false,
        temperature: plan.engine.temperature,
        text: { format: body.text?.format ?? { type: 'text' } },
        tool_choice: body.tool_choice ?? 'auto',
        tools: body.tools ?? [],
        top_logprobs: body.top_logprobs ?? 0,
        top_p: plan.engine.topP,
        truncation: 'disabled' as const,
        usage: counts && {
          input_tokens: counts.prompt_tokens,
          input_tokens_details: { cached_tokens: counts.prompt_tokens_details.cached_tokens },
          output_tokens: counts.completion_tokens,
          output_tokens_details: { reasoning_tokens: reasoningTokens },
          total_tokens: counts.total_tokens,
        },
        user: body.user ?? null,
        metadata: body.metadata ?? {},
      };
    };

    if (plan.reporting.stream) {
      await streamResponse(context, reply, plan, { snapshot, logprobsOf, log: request.log, scope });
      return reply;
    }

    const generation = await runGeneration(context, plan, scope.signal);
    const outcome = generation.choices[0]!;
    const status = outcome.finishReason === 'length' ? 'incomplete' : 'completed';
    const items: OutputItem[] = [];
    const { reasoning, answer } = splitReply(plan.reasoning, outcome.text, outcome.tokens);
    if (reasoning) items.push(reasoningItem(reasoning.text, status));
    let content: string | null = answer.text;
    let calls: ParsedToolCall[] = [];
    if (output.tools) ({ content, calls } = parseToolCalls(output.tools.format, toolNames, answer.text, dropsUnfinished(output, outcome.finishReason)));
    void checkReply(context, request.log, scope, output, calls.length > 0 ? null : content, calls, outcome.finishReason);
    // A reply cut short inside its thinking has no message.
    if (content || (calls.length === 0 && !(reasoning && answer.text === ''))) {
      items.push({ type: 'message', id: itemId('msg'), status, role: 'assistant', content: [outputText(content ?? '', logprobsOf(answer.tokens))] });
    }
    items.push(...calls.map((call) => functionCall(call)));
    return snapshot(items, outcome.finishReason, generation, reasoning?.tokens.length ?? 0);
  }

  app.post('/v1/responses', createResponse);
};

interface StreamParts {
  snapshot(items: OutputItem[], finish: FinishReason | undefined, generation: GenerationCounts | undefined, reasoningTokens?: number): unknown;
  logprobsOf(tokens: readonly GeneratedToken[]): OutputText['logprobs'];
  log: FastifyRequest['log'];
  scope: RequestScope;
}

/**
 * The Responses event stream: `response.created` and `response.in_progress`, then for each output
 * item `output_item.added`, its deltas and `output_item.done`, and `response.completed` (or
 * `response.incomplete` at the token limit). Every event carries its `sequence_number`.
 */
async function streamResponse(context: ServingContext, reply: FastifyReply, plan: ValidatedRequest, parts: StreamParts): Promise<void> {
  const { output } = plan;
  const { signal } = parts.scope;
  const sse = new SseStream(reply);
  let sequence = 0;
  const emit = (type: string, fields: Record<string, unknown>) => sse.sendNamed(type, { type, sequence_number: sequence++, ...fields });
  const items: OutputItem[] = [];
  /** The message item being written, and the function call whose arguments stream. */
  let message: { item: Extract<OutputItem, { type: 'message' }>; index: number; logprobs: OutputText['logprobs'] } | undefined;
  let call: { item: Extract<OutputItem, { type: 'function_call' }>; index: number } | undefined;
  let thinking: { item: Extract<OutputItem, { type: 'reasoning' }>; index: number } | undefined;
  let reasoningTokens = 0;

  const addReasoning = (delta: string, tokens: number) => {
    if (!thinking) {
      const item = reasoningItem('', 'in_progress');
      thinking = { item, index: items.push(item) - 1 };
      emit('response.output_item.added', { output_index: thinking.index, item: { ...item, content: [] } });
    }
    reasoningTokens += tokens;
    thinking.item.content[0]!.text += delta;
    emit('response.reasoning_text.delta', { item_id: thinking.item.id, output_index: thinking.index, content_index: 0, delta });
  };
  const closeReasoning = (status: 'completed' | 'incomplete') => {
    if (!thinking || thinking.item.status !== 'in_progress') return;
    const { item, index } = thinking;
    item.status = status;
    emit('response.reasoning_text.done', { item_id: item.id, output_index: index, content_index: 0, text: item.content[0]!.text });
    emit('response.output_item.done', { output_index: index, item });
  };

  const openMessage = () => {
    if (message) return message;
    closeReasoning('completed');
    const item: Extract<OutputItem, { type: 'message' }> = { type: 'message', id: itemId('msg'), status: 'in_progress', role: 'assistant', content: [] };
    message = { item, index: items.push(item) - 1, logprobs: [] };
    emit('response.output_item.added', { output_index: message.index, item: { ...item, content: [] } });
    emit('response.content_part.added', { item_id: item.id, output_index: message.index, content_index: 0, part: outputText('') });
    item.content.push(outputText(''));
    return message;
  };
  const addText = (delta: string, tokens: readonly GeneratedToken[]) => {
    const open = openMessage();
    const logprobs = parts.logprobsOf(tokens);
    open.item.content[0]!.text += delta;
    open.logprobs.push(...logprobs);
    emit('response.output_text.delta', { item_id: open.item.id, output_index: open.index, content_index: 0, delta, logprobs });
  };
  const closeMessage = (status: 'completed' | 'incomplete') => {
    if (!message) return;
    const { item, index, logprobs } = message;
    const part = outputText(item.content[0]!.text, logprobs);
    item.content[0] = part;
    item.status = status;
    emit('response.output_text.done', { item_id: item.id, output_index: index, content_index: 0, text: part.text, logprobs });
    emit('response.content_part.done', { item_id: item.id, output_index: index, content_index: 0, part });
    emit('response.output_item.done', { output_index: index, item });
    message = undefined;
  };
  const openCall = (name: string) => {
    closeReasoning('completed');
    closeMessage('completed');
    const item = functionCall({ name, arguments: '' }, 'in_progress') as Extract<OutputItem, { type: 'function_call' }>;
    call = { item, index: items.push(item) - 1 };
    emit('response.output_item.added', { output_index: call.index, item: { ...item } });
  };
  const addArguments = (delta: string) => {
    call!.item.arguments += delta;
    emit('response.function_call_arguments.delta', { item_id: call!.item.id, output_index: call!.index, delta });
  };
  const closeCall = (status: 'completed' | 'incomplete') => {
    if (!call) return;
    const { item, index } = call;
    item.status = status;
    emit('response.function_call_arguments.done', { item_id: item.id, output_index: index, name: item.name, arguments: item.arguments });
    emit('response.output_item.done', { output_index: index, item });
    call = undefined;
  };

  const replyStream = new ReplyStream(output, plan.reasoning);
  const take = (events: readonly ReplyEvent[]) => {
    for (const event of events) {
      if (event.type === 'reasoning') addReasoning(event.text, event.tokens.length);
      else if (event.type === 'text') {
        closeCall('completed');
        addText(event.text, event.tokens);
      } else if (event.type === 'call-start') {
        closeCall('completed');
        openCall(event.name);
      } else if (event.type === 'call-arguments') addArguments(event.delta);
      else closeCall('completed');
    }
  };

  try {
    emit('response.created', { response: parts.snapshot([], undefined, undefined) });
    emit('response.in_progress', { response: parts.snapshot([], undefined, undefined) });
    // A model that thinks aloud may open with its thinking: the message waits for its answer.
    if (!output.tools && !plan.reasoning) openMessage();
    const generation = await runGeneration(context, plan, signal, {
      chunk: (_, chunk) => take(replyStream.push(chunk)),
      finish: (outcome) => take(replyStream.end(outcome.finishReason)),
    });
    const outcome = generation.choices[0]!;
    const status = outcome.finishReason === 'length' ? 'incomplete' : 'completed';
    const calls = items.filter((item) => item.type === 'function_call');
    void checkReply(context, parts.log, parts.scope, output, calls.length > 0 ? null : outcome.text, calls.map((item) => ({ name: item.name, arguments: item.arguments })), outcome.finishReason);
    if (items.length === 0) openMessage();
    closeReasoning(status);
    closeMessage(status);
    closeCall(status);
    emit(status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: parts.snapshot(items, outcome.finishReason, generation, reasoningTokens) });
    sse.end();
  } catch (err) {
    const apiError = toOpenAIError(err);
    logFailure(reply.log, err, apiError, 'stream failed');
    emit('error', { code: apiError.code, message: apiError.message, param: apiError.param });
    sse.end();
  }
}
