import { catalogueError, invalidRequest } from '../errors.js';
import { ChatTemplateError, type ChatMessage, type ChatTools } from '../model/chat-template.js';
import type { LoadedModel } from '../model/model.js';
import type { TaskOwner } from '../preprocess/preprocessor.js';
import type { ChatRenderOptions, TooLong } from '../preprocess/protocol.js';
import type { ServingContext } from './context.js';

/** Prompts as token ids that fit the context: tokenized, or rendered with the chat template, off the HTTP thread. */

export function checkTokenIds(model: LoadedModel, ids: readonly number[], param: string): void {
  const vocab = model.config.vocabSize;
  const bad = ids.find((id) => id >= vocab);
  if (bad !== undefined) {
    throw invalidRequest(`Invalid token id ${bad} in '${param}': the vocabulary has ${vocab} tokens (0 to ${vocab - 1}).`, param, 'invalid_value');
  }
}

export const promptTooLong = (context: number, promptParam: string, length: string) =>
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
  promptParam = 'messages',
): Promise<number[]> {
  const context = model.config.contextLength;
  let prompt;
  try {
    prompt = await preprocessor.chat(messages, context, tools, render, owner);
  } catch (err) {
    if (err instanceof ChatTemplateError) throw catalogueError('invalid_chat_template', [promptParam, err.message], promptParam);
    throw err;
  }
  if ('tooLong' in prompt) throw promptTooLong(context, promptParam, atLeast(prompt.tooLong));
  return prompt.ids;
}
