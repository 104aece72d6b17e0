import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { GeneratedToken } from '../../generation/text-generation.js';
import type { FinishReason } from '../../engine/protocol.js';
import type { ParsedToolCall } from '../../tool-calls/formats.js';
import { parseToolCalls, ToolCallParser, type ParsedPiece } from '../../tool-calls/tool-call-parser.js';
import { invalidRequest, OpenAIError, toOpenAIError } from '../../errors.js';
import { logFailure } from '../../http/error-handling.js';
import { itemId, toolCallId } from '../ids.js';
import { chatLogprobs } from '../logprobs.js';
import { ResponseRequestSchema, type ChatCompletionRequest, type ResponseRequest } from '../schemas.js';
import { createdNow, planSummary, runGeneration, usage, type GenerationCounts, type ServingContext } from '../../generation/run.js';
import { SseStream } from '../../http/sse.js';
import { requestScope } from '../../http/request-scope.js';
import type { RequestScope } from '../../generation/scope.js';
import { checkReply, dropsUnfinished } from '../../generation/output-plan.js';
import { validateChat, type ValidatedRequest } from '../../generation/validate.js';
import { parseBody } from '../parse-body.js';

/**
 * `POST /v1/responses`, OpenAI's Responses API, for what a stateless server can do: input as text
 * or items, instructions, sampling, function tools, structured output, logprobs, streaming with the
 * Responses events. A request becomes the chat request it amounts to and runs as chat completions
 * do; errors name the Responses fields. Stored state (`store`, `previous_response_id`, item
 * references) and OpenAI's built-in tools are refused.
 */

const LOGPROBS_INCLUDE = 'message.output_text.logprobs';

const unsupported = (message: string, param: string, code = 'unsupported_parameter') => invalidRequest(message, param, code);

const textPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const messageItem = z.object({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(textPart)], { error: 'must be a string or an array of input_text parts' }),
});
const functionCallItem = z.object({ type: z.literal('function_call'), call_id: z.string(), name: z.string(), arguments: z.string() });
const functionCallOutputItem = z.object({
  type: z.literal('function_call_output'),
  call_id: z.string(),
  output: z.union([z.string(), z.array(textPart)], { error: 'must be a string or an array of input_text parts' }),
});

type ChatMessage = ChatCompletionRequest['messages'][number];

/** Text parts of a Responses message as chat's text parts. */
function chatContent(content: string | { type: string; text?: string | undefined }[], param: string): string | { type: string; text: string }[] {
  if (typeof content === 'string') return content;
  return content.map((part, index) => {
    if (part.type !== 'input_text' && part.type !== 'output_text' && part.type !== 'text') {
      throw unsupported(`Content of type '${part.type}' is not supported by this server (yet): only text.`, `${param}[${index}].type`);
    }
    return { type: 'text', text: part.text ?? '' };
  });
}

/** The conversation of a request, and for each chat message the input item it came from (-1: the instructions). */
function chatMessages(body: ResponseRequest): { messages: ChatMessage[]; sources: number[] } {
  const messages: ChatMessage[] = [];
  const sources: number[] = [];
  const add = (message: ChatMessage, source: number) => {
    messages.push(message);
    sources.push(source);
  };
  if (body.instructions) add({ role: 'system', content: body.instructions }, -1);
  if (typeof body.input === 'string') {
    add({ role: 'user', content: body.input }, 0);
    return { messages, sources };
  }
  body.input.forEach((item, index) => {
    const at = `input[${index}]`;
    const type = item.type ?? 'message';
    if (type === 'message') {
      const message = parseBody(messageItem, item, at);
      add({ role: message.role, content: chatContent(message.content, `${at}.content`) } as ChatMessage, index);
    } else if (type === 'function_call') {
      const call = parseBody(functionCallItem, item, at);
      const toolCall = { id: call.call_id, type: 'function' as const, function: { name: call.name, arguments: call.arguments } };
      const last = messages[messages.length - 1];
      // An assistant's text and the calls after it, or calls made together, are one assistant turn.
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), toolCall];
      else add({ role: 'assistant', content: null, tool_calls: [toolCall] }, index);
    } else if (type === 'function_call_output') {
      const output = parseBody(functionCallOutputItem, item, at);
      add({ role: 'tool', tool_call_id: output.call_id, content: chatContent(output.output, `${at}.output`) }, index);
    } else if (type === 'item_reference') {
      throw unsupported(`This server stores no responses, so '${at}' cannot refer to an earlier item: send the item itself.`, at, 'unsupported_value');
    } else {
      throw unsupported(`Input items of type '${type}' are not supported by this server: send messages, function_call and function_call_output items.`, `${at}.type`, 'unsupported_value');
    }
  });
  return { messages, sources };
}

/** What this server cannot offer, refused by name. */
function refuseUnsupported(body: ResponseRequest): void {
  const given = (value: unknown) => value !== undefined && value !== null;
  if (given(body.previous_response_id)) throw unsupported("This server stores no responses: 'previous_response_id' cannot be used; send the whole conversation as 'input'.", 'previous_response_id');
  if (given(body.conversation)) throw unsupported("This server stores no conversations: 'conversation' cannot be used; send the whole conversation as 'input'.", 'conversation');
  if (body.store === true) throw unsupported("This server stores no responses: leave 'store' out or set it to false.", 'store', 'unsupported_value');
  if (given(body.background) && body.background !== false) throw unsupported("Background responses need stored state, which this server does not keep.", 'background');
  if (given(body.prompt)) throw unsupported("Stored prompt templates ('prompt') are not available on this server.", 'prompt');
  if (body.truncation === 'auto') throw unsupported("'truncation: auto' is not supported: an input too long for the context is a 400.", 'truncation', 'unsupported_value');
  const reasoning = body.reasoning as { effort?: unknown; summary?: unknown } | null | undefined;
  if (given(reasoning) && (given(reasoning!.effort) || given(reasoning!.summary))) {
    throw unsupported("'reasoning' is not supported: this server's models do not reason apart from their reply.", 'reasoning');
  }
  body.include?.forEach((value, index) => {
    if (value !== LOGPROBS_INCLUDE) throw unsupported(`'${value}' cannot be included by this server; only '${LOGPROBS_INCLUDE}'.`, `include[${index}]`, 'unsupported_value');
  });
}

/** The chat request a Responses request amounts to. */
function chatRequest(body: ResponseRequest, messages: ChatMessage[]): ChatCompletionRequest {
  const tools = body.tools?.map((tool, index) => {
    if (tool.type !== 'function') {
      throw unsupported(`The built-in tool '${tool.type}' is not available on this server: only function tools.`, `tools[${index}].type`, 'unsupported_value');
    }
    if (tool.name === undefined) throw invalidRequest(`Missing required parameter: 'tools[${index}].name'.`, `tools[${index}].name`, 'missing_required_parameter');
    return {
      type: 'function' as const,
      function: {
        name: tool.name,
        ...(tool.description !== undefined && tool.description !== null && { description: tool.description }),
        ...(tool.parameters && { parameters: tool.parameters }),
        ...(tool.strict !== undefined && { strict: tool.strict }),
      },
    };
  });
  const choice = body.tool_choice;
  let toolChoice: ChatCompletionRequest['tool_choice'];
  if (typeof choice === 'string') toolChoice = choice;
  else if (choice) {
    if (choice.type !== 'function' || typeof choice.name !== 'string') {
      throw unsupported(`'tool_choice' of type '${choice.type}' is not supported: give "none", "auto", "required" or {"type": "function", "name": ...}.`, 'tool_choice', 'unsupported_value');
    }
    toolChoice = { type: 'function', function: { name: choice.name } };
  }
  const format = body.text?.format;
  const logprobs = body.include?.includes(LOGPROBS_INCLUDE) || (body.top_logprobs !== undefined && body.top_logprobs !== null);
  return {
    model: body.model,
    messages,
    stop: null,
    stream: body.stream ?? null,
    ...(body.max_output_tokens !== undefined && { max_completion_tokens: body.max_output_tokens }),
    ...(body.temperature !== undefined && { temperature: body.temperature }),
    ...(body.top_p !== undefined && { top_p: body.top_p }),
    ...(logprobs && { logprobs: true, top_logprobs: body.top_logprobs ?? 0 }),
    ...(tools && { tools }),
    ...(toolChoice !== undefined && { tool_choice: toolChoice }),
    ...(body.parallel_tool_calls !== undefined && { parallel_tool_calls: body.parallel_tool_calls }),
    ...(format &&
      format.type === 'json_schema' && {
        response_format: {
          type: 'json_schema' as const,
          json_schema: { name: format.name, schema: format.schema, ...(format.description !== undefined && { description: format.description }), ...(format.strict !== undefined && { strict: format.strict }) },
        },
      }),
    ...(format && format.type !== 'json_schema' && { response_format: { type: format.type } }),
  };
}

/** Chat's field names in an error, as the Responses API calls them. */
function renamed(err: unknown, sources: readonly number[]): unknown {
  if (!(err instanceof OpenAIError)) return err;
  const rename = (name: string) =>
    name
      .replace(/^max_(completion_)?tokens$/, 'max_output_tokens')
      .replace(/^messages\[(\d+)\]/, (_, k: string) => (sources[Number(k)] === -1 ? 'instructions' : `input[${sources[Number(k)]}]`))
      .replace(/^messages$/, 'input')
      .replace(/^response_format\.json_schema\./, 'text.format.')
      .replace(/^response_format/, 'text.format')
      .replace(/^tools\[(\d+)\]\.function\./, 'tools[$1].');
  const message = err.message.replace(/'(max_completion_tokens|max_tokens|messages|response_format)'/g, (_, name: string) => `'${rename(name)}'`);
  return new OpenAIError(err.statusCode, message, err.param === null ? null : rename(err.param), err.code, err.type, err.headers);
}

interface OutputText {
  type: 'output_text';
  text: string;
  annotations: never[];
  logprobs: ReturnType<typeof chatLogprobs>['content'];
}

type OutputItem =
  | { type: 'message'; id: string; status: 'in_progress' | 'completed' | 'incomplete'; role: 'assistant'; content: OutputText[] }
  | { type: 'function_call'; id: string; call_id: string; name: string; arguments: string; status: 'in_progress' | 'completed' | 'incomplete' };

const outputText = (text: string, logprobs: OutputText['logprobs'] = []): OutputText => ({ type: 'output_text', text, annotations: [], logprobs });

const functionCall = (call: ParsedToolCall, status: 'in_progress' | 'completed' = 'completed'): OutputItem => ({
  type: 'function_call',
  id: itemId('fc'),
  call_id: toolCallId(),
  name: call.name,
  arguments: call.arguments,
  status,
});

export const responseRoutes: FastifyPluginAsync<ServingContext> = async (app, context) => {
  const { model } = context;

  async function createResponse(request: FastifyRequest, reply: FastifyReply) {
    const body = parseBody(ResponseRequestSchema, request.body);
    refuseUnsupported(body);
    const { messages, sources } = chatMessages(body);
    const scope = requestScope(request, reply, context);
    let plan: ValidatedRequest;
    try {
      plan = await validateChat(context, chatRequest(body, messages), scope);
    } catch (err) {
      throw renamed(err, sources);
    }
    request.log.info({ ...planSummary(plan, plan.stream), grammar: !!plan.output.grammar, tools: plan.output.tools?.choice ?? 'none' }, 'response');
    request.log.debug({ input: body.input }, 'response input');
    const { output, logprobs } = plan;
    const toolNames = new Set(output.tools?.parameters.keys());
    const logprobsOf = (tokens: readonly GeneratedToken[]) => (logprobs === undefined ? [] : chatLogprobs(tokens).content);

    const id = itemId('resp');
    const createdAt = createdNow();
    /** The response object at one moment: `output` and `usage` as they stand. */
    const snapshot = (items: OutputItem[], finish: FinishReason | undefined, generation: GenerationCounts | undefined) => {
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
        reasoning: { effort: null, summary: null },
        store: false,
        temperature: plan.request.temperature,
        text: { format: body.text?.format ?? { type: 'text' } },
        tool_choice: body.tool_choice ?? 'auto',
        tools: body.tools ?? [],
        top_logprobs: body.top_logprobs ?? 0,
        top_p: plan.request.topP,
        truncation: 'disabled' as const,
        usage: counts && {
          input_tokens: counts.prompt_tokens,
          input_tokens_details: { cached_tokens: counts.prompt_tokens_details.cached_tokens },
          output_tokens: counts.completion_tokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: counts.total_tokens,
        },
        user: body.user ?? null,
        metadata: body.metadata ?? {},
      };
    };

    if (plan.stream) {
      await streamResponse(context, reply, plan, { snapshot, toolNames, logprobsOf, log: request.log, scope });
      return reply;
    }

    const generation = await runGeneration(context, plan, scope.signal);
    const outcome = generation.choices[0]!;
    const status = outcome.finishReason === 'length' ? 'incomplete' : 'completed';
    const items: OutputItem[] = [];
    let content: string | null = outcome.text;
    let calls: ParsedToolCall[] = [];
    if (output.tools) ({ content, calls } = parseToolCalls(output.tools.format, toolNames, outcome.text, dropsUnfinished(output, outcome.finishReason)));
    void checkReply(context, request.log, scope, output, calls.length > 0 ? null : content, calls, outcome.finishReason);
    if (content || calls.length === 0) {
      items.push({ type: 'message', id: itemId('msg'), status, role: 'assistant', content: [outputText(content ?? '', logprobsOf(outcome.tokens))] });
    }
    items.push(...calls.map((call) => functionCall(call)));
    return snapshot(items, outcome.finishReason, generation);
  }

  app.post('/v1/responses', createResponse);
};

interface StreamParts {
  snapshot(items: OutputItem[], finish: FinishReason | undefined, generation: GenerationCounts | undefined): unknown;
  toolNames: ReadonlySet<string>;
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

  const openMessage = () => {
    if (message) return message;
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

  const parser = output.tools ? new ToolCallParser(output.tools.format, parts.toolNames, output.tools.enforced) : undefined;
  let heldTokens: GeneratedToken[] = [];
  const take = (pieces: readonly ParsedPiece[]) => {
    for (const piece of pieces) {
      if ('content' in piece) {
        closeCall('completed');
        addText(piece.content, heldTokens);
        heldTokens = [];
      } else if ('callStart' in piece) {
        closeCall('completed');
        openCall(piece.callStart);
      } else if ('callArguments' in piece) addArguments(piece.callArguments);
      else {
        closeCall('completed');
        openCall(piece.call.name);
        addArguments(piece.call.arguments);
        closeCall('completed');
      }
    }
  };

  try {
    emit('response.created', { response: parts.snapshot([], undefined, undefined) });
    emit('response.in_progress', { response: parts.snapshot([], undefined, undefined) });
    if (!parser) openMessage();
    const generation = await runGeneration(context, plan, signal, {
      chunk: (_, chunk) => {
        if (!parser) return addText(chunk.text, chunk.tokens);
        heldTokens.push(...chunk.tokens);
        take(parser.push(chunk.text));
      },
      finish: (outcome) => {
        if (parser) take(parser.end(dropsUnfinished(output, outcome.finishReason)));
      },
    });
    const outcome = generation.choices[0]!;
    const status = outcome.finishReason === 'length' ? 'incomplete' : 'completed';
    const calls = items.filter((item) => item.type === 'function_call');
    void checkReply(context, parts.log, parts.scope, output, calls.length > 0 ? null : outcome.text, calls.map((item) => ({ name: item.name, arguments: item.arguments })), outcome.finishReason);
    if (items.length === 0) openMessage();
    closeMessage(status);
    closeCall(status);
    emit(status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: parts.snapshot(items, outcome.finishReason, generation) });
    sse.end();
  } catch (err) {
    const apiError = toOpenAIError(err);
    logFailure(reply.log, err, apiError, 'stream failed');
    emit('error', { code: apiError.code, message: apiError.message, param: apiError.param });
    sse.end();
  }
}
