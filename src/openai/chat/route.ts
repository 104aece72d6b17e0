import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GeneratedToken } from '../../generation/text-generation.js';
import type { FinishReason } from '../../engine/protocol.js';
import type { ParsedToolCall } from '../../tool-calls/formats.js';
import { parseToolCalls } from '../../tool-calls/tool-call-parser.js';
import { splitReasoning } from '../../reasoning/splitter.js';
import { ReplyStream, type ReplyEvent } from '../../generation/reply-stream.js';
import { responseId, toolCallId } from '../ids.js';
import { chatLogprobs } from '../logprobs.js';
import { ChatCompletionRequestSchema } from '../schemas.js';
import { createdNow, planSummary, runGeneration, usage, type ChoiceOutcome } from '../../generation/run.js';
import type { ServedModels } from '../../generation/served-models.js';
import { checkReply, dropsUnfinished, type OutputPlan } from '../../generation/output-plan.js';
import { validateGeneration } from '../../generation/validate.js';
import { chatRequest } from './request.js';
import { streamGeneration } from '../streaming.js';
import { requestScope, servedContext } from '../../http/request-scope.js';
import { bodyWithEngine, enginePath } from '../engines/route.js';
import { parseBody } from '../parse-body.js';

type ChatFinishReason = FinishReason | 'tool_calls';

/** A call as the API writes it. */
const apiToolCall = (call: ParsedToolCall) => ({ id: toolCallId(), type: 'function' as const, function: { name: call.name, arguments: call.arguments } });

/** A reply that made calls ends with `tool_calls`, except when one function was named, where OpenAI says `stop`. */
function finishReason(output: OutputPlan, reason: FinishReason, calls: number): ChatFinishReason {
  if (calls === 0 || reason !== 'stop') return reason;
  return output.tools?.choice === 'named' ? 'stop' : 'tool_calls';
}

export const chatRoutes: FastifyPluginAsync<{ models: ServedModels }> = async (app, { models }) => {
  /** `POST /v1/chat/completions`: validate, run, and answer as one JSON body or as a stream of chunks. */
  async function createChatCompletion(request: FastifyRequest, reply: FastifyReply) {
    const body = parseBody(ChatCompletionRequestSchema, bodyWithEngine(request));
    const context = await servedContext(models, body.model, reply);
    const { model, systemFingerprint } = context;
    const scope = requestScope(request, reply, context);
    const plan = await validateGeneration(context, chatRequest(body, context.limits), scope);
    const checkAfterwards = (content: string | null, calls: readonly ParsedToolCall[], reason: FinishReason) =>
      void checkReply(context, request.log, scope, output, content, calls, reason);
    const { output } = plan;
    const { logprobs, includeUsage } = plan.reporting;
    request.log.info({ ...planSummary(plan), grammar: !!output.grammar, tools: output.tools?.choice ?? 'none' }, 'chat completion');
    request.log.debug({ messages: body.messages }, 'chat messages');
    const toolNames = new Set(output.tools?.parameters.keys());
    /** A whole reply's thinking (for a model that thinks aloud) and its answer. */
    const answerOf = (text: string): { reasoning?: string; content: string } =>
      plan.reasoning ? splitReasoning(text, plan.reasoning.format, plan.reasoning.startsInside) : { content: text };
    const logprobsOf = (tokens: readonly GeneratedToken[]) => (logprobs === undefined ? null : chatLogprobs(tokens));

    const id = responseId('chatcmpl');
    const created = createdNow();
    if (plan.reporting.stream) {
      const envelope = { id, object: 'chat.completion.chunk' as const, created, model: model.id, system_fingerprint: systemFingerprint, ...(includeUsage && { usage: null }) };
      const chunk = (index: number, delta: Record<string, unknown>, logprobsField: unknown, reason: string | null) => ({
        ...envelope,
        choices: [{ index, delta, logprobs: logprobsField, finish_reason: reason }],
      });
      /** Each choice's reply as it streams. */
      const replies = new Map<number, ReplyStream>();
      const replyOf = (index: number) => {
        let stream = replies.get(index);
        if (!stream) replies.set(index, (stream = new ReplyStream(output, plan.reasoning)));
        return stream;
      };
      const callDelta = (index: number, call: Record<string, unknown>) => chunk(index, { tool_calls: [call] }, null, null);
      const chunks = (index: number, events: readonly ReplyEvent[]) =>
        events.flatMap((event) => {
          switch (event.type) {
            case 'reasoning':
              return [chunk(index, { reasoning_content: event.text }, logprobsOf(event.tokens), null)];
            case 'text':
              return [chunk(index, { content: event.text }, logprobsOf(event.tokens), null)];
            case 'call-start':
              return [callDelta(index, { index: event.index, id: toolCallId(), type: 'function', function: { name: event.name, arguments: '' } })];
            case 'call-arguments':
              return [callDelta(index, { index: event.index, function: { arguments: event.delta } })];
            case 'call-end':
              return [];
          }
        });
      await streamGeneration(
        context,
        reply,
        plan,
        {
          start: (index) => chunk(index, { role: 'assistant', content: '' }, null, null),
          chunk: (index, piece) => chunks(index, replyOf(index).push(piece)),
          finish: (outcome) => {
            const replyStream = replyOf(outcome.index);
            const last = chunks(outcome.index, replyStream.end(outcome.finishReason));
            const { calls } = replyStream;
            checkAfterwards(calls.length > 0 ? null : answerOf(outcome.text).content, calls, outcome.finishReason);
            return [...last, chunk(outcome.index, {}, null, finishReason(output, outcome.finishReason, calls.length))];
          },
          usage: (counts) => ({ ...envelope, choices: [], usage: counts }),
        },
        includeUsage,
        scope.signal,
      );
      return reply;
    }
    const generation = await runGeneration(context, plan, scope.signal);
    const { choices } = generation;
    const message = (outcome: ChoiceOutcome) => {
      const { reasoning, content: answer } = answerOf(outcome.text);
      // A model that thinks aloud has the field on every reply (null when it did not think), as vLLM gives it.
      const thinking = model.reasoningFormat && { reasoning_content: reasoning ?? null };
      if (!output.tools) {
        checkAfterwards(answer, [], outcome.finishReason);
        const content = answer === '' && reasoning !== undefined ? null : answer;
        return { message: { role: 'assistant' as const, content, ...thinking, refusal: null }, finish_reason: outcome.finishReason };
      }
      const { content, calls } = parseToolCalls(output.tools.format, toolNames, answer, dropsUnfinished(output, outcome.finishReason));
      checkAfterwards(content, calls, outcome.finishReason);
      return {
        message: { role: 'assistant' as const, content, ...thinking, refusal: null, ...(calls.length > 0 && { tool_calls: calls.map(apiToolCall) }) },
        finish_reason: finishReason(output, outcome.finishReason, calls.length),
      };
    };
    return {
      id,
      object: 'chat.completion' as const,
      created,
      model: model.id,
      system_fingerprint: systemFingerprint,
      choices: choices.map((outcome) => {
        const { message: reply, finish_reason } = message(outcome);
        return { index: outcome.index, message: reply, logprobs: logprobsOf(outcome.tokens), finish_reason };
      }),
      usage: usage(plan, generation),
    };
  }

  app.post('/v1/chat/completions', createChatCompletion);
  app.post(enginePath('/chat/completions'), createChatCompletion);
};
