import { randomBytes } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { RequestLimits } from '../../options.js';
import { toOpenAIError } from '../../errors.js';
import type { FinishReason } from '../../engine/protocol.js';
import { checkMessageCount } from '../../generation/limits.js';
import { checkReply, dropsUnfinished, toTemplateTools } from '../../generation/output-plan.js';
import { encodeChat } from '../../generation/prompts.js';
import { ReplyStream, type ReplyEvent } from '../../generation/reply-stream.js';
import { planSummary, runGeneration, type ChoiceOutcome, type GenerationCounts } from '../../generation/run.js';
import type { ServedModels } from '../../generation/served-models.js';
import { validateGeneration, type ValidatedRequest } from '../../generation/validate.js';
import { apiErrorHandler, logFailure } from '../../http/error-handling.js';
import { requestScope, servedContext } from '../../http/request-scope.js';
import { SseStream } from '../../http/sse.js';
import { parseBody } from '../../openai/parse-body.js';
import { splitReasoning } from '../../reasoning/splitter.js';
import type { ParsedToolCall } from '../../tool-calls/formats.js';
import { parseToolCalls } from '../../tool-calls/tool-call-parser.js';
import { anthropicErrorBody } from '../errors.js';
import { CountTokensRequestSchema, MessagesRequestSchema } from '../schemas.js';
import { conversationKwargs, conversationMessages, functionDefinitions, messagesRequest } from './request.js';

/** Ids in Anthropic's style: a prefix and 24 random characters. */
const anthropicId = (prefix: 'msg' | 'toolu') => `${prefix}_${randomBytes(18).toString('base64url')}`;

type StopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use';

function stopReason(outcome: Pick<ChoiceOutcome, 'finishReason' | 'stopString'>, calls: number): { stop_reason: StopReason; stop_sequence: string | null } {
  if (outcome.finishReason === 'length') return { stop_reason: 'max_tokens', stop_sequence: null };
  if (outcome.stopString !== undefined) return { stop_reason: 'stop_sequence', stop_sequence: outcome.stopString };
  return { stop_reason: calls > 0 ? 'tool_use' : 'end_turn', stop_sequence: null };
}

/** A call as a `tool_use` block: its input is the arguments object. */
const toolUseBlock = (call: ParsedToolCall) => ({ type: 'tool_use' as const, id: anthropicId('toolu'), name: call.name, input: JSON.parse(call.arguments) as unknown });

/** Anthropic counts the prompt tokens read from the prefix cache apart from the others. */
function usage(plan: ValidatedRequest, counts: GenerationCounts) {
  const prompt = plan.prompts[0]!.length;
  return { input_tokens: prompt - counts.cachedTokens, output_tokens: counts.completionTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: counts.cachedTokens };
}

/**
 * `POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API over the same
 * generation core as the OpenAI routes, with its errors in Anthropic's shape.
 */
export const messagesRoutes: FastifyPluginAsync<{ models: ServedModels; limits: Pick<RequestLimits, 'maxBodyBytes'> }> = async (app, { models, limits }) => {
  app.setErrorHandler(apiErrorHandler(limits, anthropicErrorBody));

  async function createMessage(request: FastifyRequest, reply: FastifyReply) {
    const body = parseBody(MessagesRequestSchema, request.body);
    const context = await servedContext(models, body.model, reply);
    const { model } = context;
    const scope = requestScope(request, reply, context);
    const plan = await validateGeneration(context, messagesRequest(body), scope);
    const { output } = plan;
    request.log.info({ ...planSummary(plan), grammar: !!output.grammar, tools: output.tools?.choice ?? 'none' }, 'message');
    const toolNames = new Set(output.tools?.parameters.keys());
    const checkAfterwards = (content: string | null, calls: readonly ParsedToolCall[], reason: FinishReason) =>
      void checkReply(context, request.log, scope, output, content, calls, reason);
    const id = anthropicId('msg');
    const envelope = { id, type: 'message' as const, role: 'assistant' as const, model: model.id };

    if (plan.reporting.stream) {
      await streamMessage(reply, plan, envelope, checkAfterwards, scope.signal, context);
      return reply;
    }

    const generation = await runGeneration(context, plan, scope.signal);
    const outcome = generation.choices[0]!;
    const { reasoning, content: answer } = plan.reasoning ? splitReasoning(outcome.text, plan.reasoning.format, plan.reasoning.startsInside) : { content: outcome.text };
    const parsed = output.tools ? parseToolCalls(output.tools.format, toolNames, answer, dropsUnfinished(output, outcome.finishReason)) : { content: answer, calls: [] };
    checkAfterwards(parsed.content, parsed.calls, outcome.finishReason);
    const text = parsed.content ?? '';
    return {
      ...envelope,
      content: [
        ...(reasoning !== undefined ? [{ type: 'thinking' as const, thinking: reasoning, signature: '' }] : []),
        ...(text !== '' ? [{ type: 'text' as const, text, citations: null }] : []),
        ...parsed.calls.map(toolUseBlock),
      ],
      ...stopReason(outcome, parsed.calls.length),
      usage: usage(plan, generation),
    };
  }

  app.post('/v1/messages', createMessage);

  app.post('/v1/messages/count_tokens', async (request, reply) => {
    const body = parseBody(CountTokensRequestSchema, request.body);
    const context = await servedContext(models, body.model, reply);
    checkMessageCount(body.messages.length, context.limits);
    const tools = functionDefinitions(body);
    const kwargs = conversationKwargs(body);
    const ids = await encodeChat(context, conversationMessages(body), tools && toTemplateTools(tools), requestScope(request, reply, context), kwargs && { kwargs });
    return { input_tokens: ids.length };
  });
};

/**
 * A message as Anthropic streams it: `message_start`, a `ping`, each content block as
 * `content_block_start`, its deltas (`thinking_delta`, `text_delta`, `input_json_delta`) and
 * `content_block_stop`, then `message_delta` with the stop reason and usage, and `message_stop`.
 * A failure after the stream began is an `error` event.
 */
async function streamMessage(
  reply: FastifyReply,
  plan: ValidatedRequest,
  envelope: { id: string; type: 'message'; role: 'assistant'; model: string },
  check: (content: string | null, calls: readonly ParsedToolCall[], reason: FinishReason) => void,
  signal: AbortSignal,
  context: Parameters<typeof runGeneration>[0],
): Promise<void> {
  const sse = new SseStream(reply);
  const send = (type: string, fields: Record<string, unknown> = {}) => sse.sendNamed(type, { type, ...fields });
  const replyStream = new ReplyStream(plan.output, plan.reasoning);
  let open: { index: number; type: 'thinking' | 'text' | 'tool_use' } | undefined;
  let blocks = 0;
  let text = '';
  const close = () => {
    if (!open) return;
    if (open.type === 'thinking') send('content_block_delta', { index: open.index, delta: { type: 'signature_delta', signature: '' } });
    send('content_block_stop', { index: open.index });
    open = undefined;
  };
  const start = (type: 'thinking' | 'text' | 'tool_use', block: Record<string, unknown>) => {
    close();
    open = { index: blocks++, type };
    send('content_block_start', { index: open.index, content_block: { type, ...block } });
  };
  const delta = (delta: Record<string, unknown>) => send('content_block_delta', { index: open!.index, delta });
  const emit = (events: readonly ReplyEvent[]) => {
    for (const event of events) {
      if ((event.type === 'text' || event.type === 'reasoning') && event.text === '') continue;
      switch (event.type) {
        case 'reasoning':
          if (open?.type !== 'thinking') start('thinking', { thinking: '', signature: '' });
          delta({ type: 'thinking_delta', thinking: event.text });
          break;
        case 'text':
          if (open?.type !== 'text') start('text', { text: '', citations: null });
          text += event.text;
          delta({ type: 'text_delta', text: event.text });
          break;
        case 'call-start':
          start('tool_use', { id: anthropicId('toolu'), name: event.name, input: {} });
          break;
        case 'call-arguments':
          delta({ type: 'input_json_delta', partial_json: event.delta });
          break;
        case 'call-end':
          close();
          break;
      }
    }
  };
  try {
    send('message_start', {
      message: { ...envelope, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: plan.prompts[0]!.length, output_tokens: 0 } },
    });
    send('ping');
    let finished: ChoiceOutcome | undefined;
    const generation = await runGeneration(context, plan, signal, {
      chunk: (_index, chunk) => emit(replyStream.push(chunk)),
      finish: (outcome) => {
        emit(replyStream.end(outcome.finishReason));
        close();
        finished = outcome;
      },
    });
    const calls = replyStream.calls;
    check(calls.length > 0 ? null : text, calls, finished!.finishReason);
    send('message_delta', { delta: stopReason(finished!, calls.length), usage: usage(plan, generation) });
    send('message_stop');
    sse.end();
  } catch (err) {
    const apiError = toOpenAIError(err);
    logFailure(reply.log, err, apiError, 'stream failed');
    send('error', { error: anthropicErrorBody(apiError).error });
    sse.end();
  }
}
