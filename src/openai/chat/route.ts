import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GeneratedToken } from '../../generation/text-generation.js';
import type { FinishReason } from '../../engine/protocol.js';
import type { ParsedToolCall } from '../../tool-calls/formats.js';
import { parseToolCalls, ToolCallParser } from '../../tool-calls/tool-call-parser.js';
import { responseId, toolCallId } from '../ids.js';
import { chatLogprobs } from '../logprobs.js';
import { ChatCompletionRequestSchema } from '../schemas.js';
import { createdNow, planSummary, runGeneration, usage, type ChoiceOutcome } from '../../generation/run.js';
import type { ServedModels } from '../../generation/served-models.js';
import { checkReply, dropsUnfinished, type OutputPlan } from '../../generation/output-plan.js';
import { validateGeneration } from '../../generation/validate.js';
import { chatRequest } from './request.js';
import { streamGeneration } from '../streaming.js';
import { requestScope } from '../../http/request-scope.js';
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
    const context = models.resolve(body.model);
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
    const logprobsOf = (tokens: GeneratedToken[]) => (logprobs === undefined ? null : chatLogprobs(tokens));

    const id = responseId('chatcmpl');
    const created = createdNow();
    if (plan.reporting.stream) {
      const envelope = { id, object: 'chat.completion.chunk' as const, created, model: model.id, system_fingerprint: systemFingerprint, ...(includeUsage && { usage: null }) };
      const chunk = (index: number, delta: Record<string, unknown>, logprobsField: unknown, reason: string | null) => ({
        ...envelope,
        choices: [{ index, delta, logprobs: logprobsField, finish_reason: reason }],
      });
      /** Each choice's parser, its calls so far, and the tokens of text it holds back. */
      const choices = new Map<number, { parser: ToolCallParser; calls: ParsedToolCall[]; heldTokens: GeneratedToken[] }>();
      const choiceState = (index: number) => {
        let state = choices.get(index);
        if (!state && output.tools) {
          state = { parser: new ToolCallParser(output.tools.format, toolNames, output.tools.enforced), calls: [], heldTokens: [] };
          choices.set(index, state);
        }
        return state;
      };
      const callDelta = (index: number, call: Record<string, unknown>) => chunk(index, { tool_calls: [call] }, null, null);
      const events = (index: number, pieces: ReturnType<ToolCallParser['push']>, tokens: GeneratedToken[]) => {
        const state = choiceState(index)!;
        state.heldTokens.push(...tokens);
        const started = (name: string, args: string) => {
          const position = state.calls.push({ name, arguments: args }) - 1;
          return callDelta(index, { index: position, id: toolCallId(), type: 'function', function: { name, arguments: '' } });
        };
        return pieces.flatMap((piece) => {
          if ('content' in piece) return [chunk(index, { content: piece.content }, logprobsOf(state.heldTokens.splice(0)), null)];
          if ('callStart' in piece) return [started(piece.callStart, '')];
          if ('callArguments' in piece) {
            const position = state.calls.length - 1;
            state.calls[position]!.arguments += piece.callArguments;
            return [callDelta(index, { index: position, function: { arguments: piece.callArguments } })];
          }
          return [started(piece.call.name, piece.call.arguments), callDelta(index, { index: state.calls.length - 1, function: { arguments: piece.call.arguments } })];
        });
      };
      await streamGeneration(
        context,
        reply,
        plan,
        {
          start: (index) => chunk(index, { role: 'assistant', content: '' }, null, null),
          chunk: (index, piece) => {
            const state = choiceState(index);
            if (!state) return [chunk(index, { content: piece.text }, logprobsOf(piece.tokens), null)];
            return events(index, state.parser.push(piece.text), piece.tokens);
          },
          finish: (outcome) => {
            const state = choiceState(outcome.index);
            const last = state ? events(outcome.index, state.parser.end(dropsUnfinished(output, outcome.finishReason)), []) : [];
            const calls = state?.calls ?? [];
            checkAfterwards(calls.length > 0 ? null : outcome.text, calls, outcome.finishReason);
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
      if (!output.tools) {
        checkAfterwards(outcome.text, [], outcome.finishReason);
        return { message: { role: 'assistant' as const, content: outcome.text, refusal: null }, finish_reason: outcome.finishReason };
      }
      const { content, calls } = parseToolCalls(output.tools.format, toolNames, outcome.text, dropsUnfinished(output, outcome.finishReason));
      checkAfterwards(content, calls, outcome.finishReason);
      return {
        message: { role: 'assistant' as const, content, refusal: null, ...(calls.length > 0 && { tool_calls: calls.map(apiToolCall) }) },
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
