import { z } from 'zod';

/** Request bodies as OpenAI defines them. Unknown fields are ignored, as OpenAI does. */

const MAX_STOP_STRINGS = 4;

const stop = z.union([
  z.string().min(1),
  z.array(z.string().min(1)).max(MAX_STOP_STRINGS),
], { error: `must be a string or an array of at most ${MAX_STOP_STRINGS} non-empty strings` });

/** The sampling fields both endpoints share. `null` means "not given", as in OpenAI's SDKs. */
const sampling = {
  model: z.string(),
  n: z.number().int().min(1).max(128).nullish(),
  stop: stop.nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stream: z.boolean().nullish(),
  max_tokens: z.number().int().min(1).nullish(),
};

export const CompletionRequestSchema = z.object({
  ...sampling,
  prompt: z.string(),
});
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

const textPart = z.object({ type: z.literal('text'), text: z.string() });

const messageContent = z.union([z.string(), z.array(textPart)], {
  error: 'must be a string or an array of text parts ({"type": "text", "text": ...})',
});

const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: messageContent,
  name: z.string().optional(),
});

export const ChatCompletionRequestSchema = z.object({
  ...sampling,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;
export type ChatRequestMessage = z.infer<typeof message>;

/** `stop` as a list. */
export function stopStrings(value: string | string[] | null | undefined): string[] {
  if (value === null || value === undefined) return [];
  return typeof value === 'string' ? [value] : value;
}
