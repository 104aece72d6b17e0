import type { FastifyPluginAsync } from 'fastify';
import type { ChatMessage } from '../model/chat-template.js';
import { invalidRequest } from './errors.js';
import { responseId } from './ids.js';
import { chatLogprobs } from './logprobs.js';
import { ChatCompletionRequestSchema, type ChatCompletionRequest, type ChatRequestMessage } from './schemas.js';
import { checkLimits, checkMessageCount } from './limits.js';
import { checkModel, createdNow, encodeChat, planGeneration, planSummary, runGeneration, usage, type ServingContext } from './serving.js';
import { requestSignal, streamGeneration } from './streaming.js';
import { parseBody } from './validation.js';

const unsupported = (param: string, what = `'${param}'`) =>
  invalidRequest(`${what} is not supported by this server (yet).`, param, 'unsupported_parameter');

/** Fields of OpenAI's chat API that a plain text decoder cannot honour: refused rather than ignored. */
function refuseUnsupported(body: ChatCompletionRequest): void {
  for (const field of ['tools', 'tool_choice', 'functions', 'function_call', 'audio'] as const) {
    if (body[field] !== undefined && body[field] !== null) throw unsupported(field);
  }
  const format = body.response_format?.type;
  if (format !== undefined && format !== 'text') {
    throw invalidRequest(`response_format '${format}' is not supported by this server (yet); only 'text' is.`, 'response_format.type', 'unsupported_value');
  }
  if (body.top_logprobs !== null && body.top_logprobs !== undefined && !body.logprobs) {
    throw invalidRequest("'top_logprobs' requires 'logprobs' to be true.", 'top_logprobs', 'invalid_value');
  }
}

function templateMessage(message: ChatRequestMessage, index: number): ChatMessage {
  let content: string;
  if (typeof message.content === 'string') {
    content = message.content;
  } else {
    content = message.content
      .map((part, partIndex) => {
        const param = `messages[${index}].content[${partIndex}]`;
        if (part.type !== 'text') throw unsupported(`${param}.type`, `Content of type '${part.type}'`);
        if (typeof part.text !== 'string') throw invalidRequest(`Missing required parameter: '${param}.text'.`, `${param}.text`, 'missing_required_parameter');
        return part.text;
      })
      .join('');
  }
  return {
    role: message.role === 'developer' ? 'system' : message.role,
    content,
    ...(message.name !== undefined && { name: message.name }),
  };
}

export const chatRoutes: FastifyPluginAsync<ServingContext> = async (app, context) => {
  const { model, systemFingerprint, limits } = context;
  const { tokenizer } = model;

  app.post('/v1/chat/completions', async (request, reply) => {
    const body = parseBody(ChatCompletionRequestSchema, request.body);
    checkModel(model, body.model);
    refuseUnsupported(body);
    const useCompletionTokens = body.max_completion_tokens !== null && body.max_completion_tokens !== undefined;
    const maxTokensParam = useCompletionTokens ? 'max_completion_tokens' : 'max_tokens';
    checkLimits(body, limits, { value: useCompletionTokens ? body.max_completion_tokens : body.max_tokens, param: maxTokensParam });
    checkMessageCount(body.messages.length, limits);
    const promptIds = await encodeChat(context, body.messages.map(templateMessage));
    const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : undefined;
    const plan = planGeneration(context, [promptIds], body, {
      budget: {
        requested: useCompletionTokens ? body.max_completion_tokens : body.max_tokens,
        default: Number.POSITIVE_INFINITY,
        param: maxTokensParam,
        promptParam: 'messages',
      },
      ...(logprobs !== undefined && { logprobs }),
    });
    request.log.info(planSummary(plan, body.stream), 'chat completion');
    request.log.debug({ messages: body.messages }, 'chat messages');

    const id = responseId('chatcmpl');
    const created = createdNow();
    if (body.stream) {
      const includeUsage = !!body.stream_options?.include_usage;
      const envelope = { id, object: 'chat.completion.chunk' as const, created, model: model.id, system_fingerprint: systemFingerprint, ...(includeUsage && { usage: null }) };
      const chunk = (index: number, delta: Record<string, string>, logprobsField: unknown, finishReason: string | null) => ({
        ...envelope,
        choices: [{ index, delta, logprobs: logprobsField, finish_reason: finishReason }],
      });
      await streamGeneration(
        context,
        reply,
        plan,
        {
          start: (index) => chunk(index, { role: 'assistant', content: '' }, null, null),
          chunk: (index, piece) => chunk(index, { content: piece.text }, logprobs === undefined ? null : chatLogprobs(tokenizer, piece.tokens), null),
          finish: (outcome) => chunk(outcome.index, {}, null, outcome.finishReason),
          usage: (counts) => ({ ...envelope, choices: [], usage: counts }),
        },
        includeUsage,
      );
      return reply;
    }
    const { choices, completionTokens } = await runGeneration(context, plan, requestSignal(reply, context.requestTimeoutMs));
    return {
      id,
      object: 'chat.completion' as const,
      created,
      model: model.id,
      system_fingerprint: systemFingerprint,
      choices: choices.map((outcome) => ({
        index: outcome.index,
        message: { role: 'assistant' as const, content: outcome.text, refusal: null },
        logprobs: logprobs === undefined ? null : chatLogprobs(tokenizer, outcome.tokens),
        finish_reason: outcome.finishReason,
      })),
      usage: usage(plan, completionTokens),
    };
  });
};
