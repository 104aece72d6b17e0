import type { FastifyPluginAsync } from 'fastify';
import { ChatTemplateError, type ChatMessage } from '../model/chat-template.js';
import type { LoadedModel } from '../model/model.js';
import type { RouteOptions } from './completions.js';
import { invalidRequest } from './errors.js';
import { responseId } from './ids.js';
import { ChatCompletionRequestSchema, type ChatRequestMessage } from './schemas.js';
import { checkModel, createdNow, planChoices, planSummary, runChoices, usage } from './serving.js';
import { disconnectSignal, streamChoices } from './streaming.js';
import { parseBody } from './validation.js';

function templateMessage(message: ChatRequestMessage): ChatMessage {
  const content = typeof message.content === 'string' ? message.content : message.content.map((part) => part.text).join('');
  return {
    role: message.role === 'developer' ? 'system' : message.role,
    content,
    ...(message.name !== undefined && { name: message.name }),
  };
}

/** Renders the conversation and tokenizes it; a template that writes its own BOS gets no second one. */
function chatPromptIds(model: LoadedModel, messages: ChatRequestMessage[]): number[] {
  let text: string;
  try {
    text = model.chatTemplate.render(messages.map(templateMessage));
  } catch (err) {
    if (err instanceof ChatTemplateError) throw invalidRequest(`The chat template rejected the messages: ${err.message}`, 'messages');
    throw err;
  }
  const { bosToken } = model.tokenizer;
  const templateWroteBos = bosToken !== undefined && bosToken !== '' && text.startsWith(bosToken);
  return model.tokenizer.encode(text, !templateWroteBos);
}

export const chatRoutes: FastifyPluginAsync<RouteOptions> = async (app, { model, engine }) => {
  app.post('/v1/chat/completions', async (request, reply) => {
    const body = parseBody(ChatCompletionRequestSchema, request.body);
    checkModel(model, body.model);
    const promptIds = chatPromptIds(model, body.messages);
    const useCompletionTokens = body.max_completion_tokens !== null && body.max_completion_tokens !== undefined;
    const plan = planChoices(model, engine, promptIds, body, {
      requested: useCompletionTokens ? body.max_completion_tokens : body.max_tokens,
      default: Number.POSITIVE_INFINITY,
      param: useCompletionTokens ? 'max_completion_tokens' : 'max_tokens',
      promptParam: 'messages',
    });
    request.log.info(planSummary(plan, body.stream), 'chat completion');
    request.log.debug({ messages: body.messages }, 'chat messages');

    const id = responseId('chatcmpl');
    const created = createdNow();
    if (body.stream) {
      const envelope = { id, object: 'chat.completion.chunk' as const, created, model: model.id };
      const chunk = (index: number, delta: Record<string, string>, finishReason: string | null) => ({
        ...envelope,
        choices: [{ index, delta, logprobs: null, finish_reason: finishReason }],
      });
      await streamChoices(reply, engine, model, plan, {
        start: (index) => chunk(index, { role: 'assistant', content: '' }, null),
        text: (index, text) => chunk(index, { content: text }, null),
        finish: (index, outcome) => chunk(index, {}, outcome.finishReason),
      });
      return reply;
    }
    const outcomes = await runChoices(engine, model, plan, disconnectSignal(reply));
    return {
      id,
      object: 'chat.completion' as const,
      created,
      model: model.id,
      choices: outcomes.map((outcome, index) => ({
        index,
        message: { role: 'assistant' as const, content: outcome.text, refusal: null },
        logprobs: null,
        finish_reason: outcome.finishReason,
      })),
      usage: usage(promptIds.length, outcomes),
    };
  });
};
