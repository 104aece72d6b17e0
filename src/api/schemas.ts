import { z } from 'zod';

/** Request bodies as OpenAI defines them. Unknown fields are ignored, as OpenAI does. */

/** How many stop strings and how long they may be are the server's limits (see limits.ts). */
const stop = z.union([z.string().min(1), z.array(z.string().min(1))], {
  error: 'must be a string or an array of non-empty strings',
});

const penalty = z.number().min(-2).max(2);

/** Token id (as a string key, as JSON objects have) → bias from −100 to 100. */
/**
 * Token id (as a string key, as JSON objects have) → bias from −100 to 100. Keys are written as
 * plain decimals: with leading zeros allowed, "7", "07" and "007" would be one token under many keys.
 */
const logitBias = z.record(z.string().regex(/^(0|[1-9]\d*)$/, 'keys must be token ids, written in decimal without leading zeros'), z.number().min(-100).max(100));

/** OpenAI takes any 64-bit integer as a seed; beyond 2^53 a JSON number keeps only 53 bits of it. */
const seed = z
  .number()
  .min(-(2 ** 63))
  .max(2 ** 63)
  .superRefine((value, context) => {
    if (!Number.isInteger(value)) context.addIssue({ code: 'invalid_type', expected: 'int', input: value });
  });

const streamOptions = z.object({ include_usage: z.boolean().nullish() });

/** The fields both endpoints share. `null` means "not given", as in OpenAI's SDKs. */
const common = {
  model: z.string(),
  n: z.number().int().min(1).nullish(),
  stop: stop.nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: seed.nullish(),
  stream: z.boolean().nullish(),
  stream_options: streamOptions.nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  presence_penalty: penalty.nullish(),
  frequency_penalty: penalty.nullish(),
  logit_bias: logitBias.nullish(),
  user: z.string().nullish(),
};

const tokenId = z.number().int().min(0);

export const CompletionRequestSchema = z.object({
  ...common,
  prompt: z.union(
    [z.string(), z.array(z.string()).min(1), z.array(tokenId).min(1), z.array(z.array(tokenId).min(1)).min(1)],
    { error: 'must be a string, an array of strings, an array of token ids or an array of arrays of token ids' },
  ),
  best_of: z.number().int().min(1).nullish(),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
  suffix: z.string().nullish(),
});
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });

const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(contentPart)], {
    error: 'must be a string or an array of text parts ({"type": "text", "text": ...})',
  }),
  name: z.string().optional(),
});

export const ChatCompletionRequestSchema = z.object({
  ...common,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  response_format: z.looseObject({ type: z.string() }).nullish(),
  // Accepted here so that they can be refused with a clear message.
  tools: z.unknown().optional(),
  tool_choice: z.unknown().optional(),
  functions: z.unknown().optional(),
  function_call: z.unknown().optional(),
  audio: z.unknown().optional(),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;
export type ChatRequestMessage = z.infer<typeof message>;

/** `stop` as a list. */
export function stopStrings(value: string | string[] | null | undefined): string[] {
  if (value === null || value === undefined) return [];
  return typeof value === 'string' ? [value] : value;
}
