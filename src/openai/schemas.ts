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

/**
 * OpenAI takes any 64-bit integer as a seed, but beyond 2^53 a JSON number read as a double keeps
 * only 53 bits of it: 2^63 and 2^63 − 1 would be one seed. Only the seeds that arrive exactly are taken.
 */
const seed = z.number().superRefine((value, context) => {
  if (!Number.isInteger(value)) context.addIssue({ code: 'invalid_type', expected: 'int', input: value });
  else if (!Number.isSafeInteger(value)) {
    context.addIssue({
      code: 'custom',
      input: value,
      message: `must be an integer from -${Number.MAX_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER}: beyond 2^53 a JSON number is not read exactly, so different seeds would give the same output`,
    });
  }
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
  /** 0 only with `echo`: the prompt is scored, nothing generated. */
  max_tokens: z.number().int().min(0).nullish(),
  best_of: z.number().int().min(1).nullish(),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
  suffix: z.string().nullish(),
});
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const content = z.union([z.string(), z.array(contentPart)], {
  error: 'must be a string or an array of text parts ({"type": "text", "text": ...})',
});

/** A JSON schema as a request carries it: any object (what it says is checked later, with a schema validator). */
const jsonSchemaObject = z.record(z.string(), z.unknown());

/** OpenAI's rule for function and schema names. */
const functionName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, underscores or dashes');

const toolCall = z.object({
  id: z.string(),
  type: z.literal('function'),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const message = z.discriminatedUnion('role', [
  z.object({ role: z.enum(['system', 'developer', 'user']), content, name: z.string().optional() }),
  // Fields the server does not use (reasoning_content, thinking, …) are kept for the chat template.
  z.looseObject({
    role: z.literal('assistant'),
    content: content.nullish(),
    name: z.string().optional(),
    tool_calls: z.array(toolCall).nullish(),
    refusal: z.string().nullish(),
    reasoning_content: z.string().nullish(),
  }),
  z.object({ role: z.literal('tool'), content, tool_call_id: z.string(), name: z.string().optional() }),
]);

export const ResponseFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: functionName,
      description: z.string().optional(),
      schema: jsonSchemaObject.optional(),
      strict: z.boolean().nullish(),
    }),
  }),
]);
export type ResponseFormat = z.infer<typeof ResponseFormatSchema>;

const functionTool = z.object({
  type: z.literal('function'),
  function: z.object({
    name: functionName,
    description: z.string().optional(),
    parameters: jsonSchemaObject.optional(),
    strict: z.boolean().nullish(),
  }),
});
export type FunctionTool = z.infer<typeof functionTool>;

const toolChoice = z.union(
  [z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), function: z.object({ name: z.string() }) })],
  { error: 'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}' },
);
export type ToolChoice = z.infer<typeof toolChoice>;

/** What `reasoning_effort` (chat) and `reasoning.effort` (Responses) may be. */
export const REASONING_EFFORTS = ['none', 'minimal', 'low', 'medium', 'high'] as const;

export const ChatCompletionRequestSchema = z.object({
  ...common,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  response_format: ResponseFormatSchema.nullish(),
  tools: z.array(functionTool).max(128).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  /** More variables for the chat template (vLLM's extension), e.g. `{"enable_thinking": false}`. */
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  /** Given to the chat template as `reasoning_effort` (templates such as gpt-oss's read it), as vLLM does. */
  reasoning_effort: z.enum(REASONING_EFFORTS).nullish(),
  // Accepted here so that they can be refused with a clear message.
  functions: z.unknown().optional(),
  function_call: z.unknown().optional(),
  audio: z.unknown().optional(),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;
export type ChatRequestMessage = z.infer<typeof message>;

/**
 * `POST /v1/responses`. Input items are read one by one (see responses.ts), so that each kind this
 * server cannot take is refused by name.
 */
const responseInputItem = z.looseObject({ type: z.string().optional() });

const responseFunctionTool = z.looseObject({
  type: z.string(),
  name: functionName.optional(),
  description: z.string().nullish(),
  parameters: jsonSchemaObject.nullish(),
  strict: z.boolean().nullish(),
});

const responseTextFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({ type: z.literal('json_schema'), name: functionName, description: z.string().optional(), schema: jsonSchemaObject, strict: z.boolean().nullish() }),
]);

export const ResponseRequestSchema = z.object({
  model: z.string(),
  input: z.union([z.string(), z.array(responseInputItem).min(1)], { error: 'must be a string or an array of input items' }),
  instructions: z.string().nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  include: z.array(z.string()).nullish(),
  stream: z.boolean().nullish(),
  store: z.boolean().nullish(),
  tools: z.array(responseFunctionTool).max(128).nullish(),
  tool_choice: z
    .union([z.enum(['none', 'auto', 'required']), z.looseObject({ type: z.string(), name: z.string().optional() })], {
      error: 'must be "none", "auto", "required" or {"type": "function", "name": ...}',
    })
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z.object({ format: responseTextFormat.nullish() }).nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  truncation: z.enum(['disabled', 'auto']).nullish(),
  user: z.string().nullish(),
  // Accepted here so that they can be refused with a clear message.
  previous_response_id: z.unknown().optional(),
  conversation: z.unknown().optional(),
  background: z.unknown().optional(),
  reasoning: z.unknown().optional(),
  prompt: z.unknown().optional(),
});
export type ResponseRequest = z.infer<typeof ResponseRequestSchema>;

/** `POST /tokenize` (vLLM's shape): a text, or a conversation rendered through the chat template. */
export const TokenizeRequestSchema = z.object({
  model: z.string().nullish(),
  prompt: z.string().optional(),
  messages: z.array(message).min(1).optional(),
  tools: z.array(functionTool).max(128).nullish(),
  /** For a text, default true; for messages, default false (as chat completions: the template writes any BOS). */
  add_special_tokens: z.boolean().nullish(),
  add_generation_prompt: z.boolean().nullish(),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  return_token_strs: z.boolean().nullish(),
});
export type TokenizeRequest = z.infer<typeof TokenizeRequestSchema>;

/** `POST /detokenize` (vLLM's shape). */
export const DetokenizeRequestSchema = z.object({
  model: z.string().nullish(),
  tokens: z.array(tokenId),
});

/** `stop` as a list. */
export function stopStrings(value: string | string[] | null | undefined): string[] {
  if (value === null || value === undefined) return [];
  return typeof value === 'string' ? [value] : value;
}
