import { z } from 'zod';

/**
 * Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`) as this server reads
 * it. Content blocks are read one by one (see messages/request.ts), so that a kind this server
 * cannot take is refused by name rather than dropped.
 */

/** A content block of any kind: its `type` decides how the rest is read. */
const contentBlock = z.looseObject({ type: z.string() });

const content = z.union([z.string(), z.array(contentBlock)], { error: 'must be a string or an array of content blocks' });

const message = z.object({
  role: z.enum(['user', 'assistant']),
  content,
});

/** Anthropic's rule for tool names. */
const toolName = z.string().regex(/^[a-zA-Z0-9_-]{1,128}$/, 'must be 1 to 128 letters, digits, underscores or dashes');

const tool = z.looseObject({
  name: toolName,
  description: z.string().optional(),
  input_schema: z.record(z.string(), z.unknown()),
  type: z.string().nullish(),
});

const toolChoice = z.discriminatedUnion('type', [
  z.object({ type: z.literal('auto'), disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal('any'), disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal('tool'), name: toolName, disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal('none') }),
]);

const thinking = z.looseObject({ type: z.enum(['enabled', 'disabled', 'adaptive', 'between_tools']), budget_tokens: z.number().int().min(0).optional() });

const outputConfig = z.object({
  format: z.object({ type: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()) }).nullish(),
  effort: z.enum(['low', 'medium', 'high', 'xhigh', 'max']).nullish(),
});

const system = z.union([z.string(), z.array(z.looseObject({ type: z.literal('text'), text: z.string() }))], {
  error: 'must be a string or an array of text blocks',
});

/** What a conversation is made of: shared by the two endpoints. */
const conversation = {
  model: z.string(),
  messages: z.array(message).min(1),
  system: system.optional(),
  tools: z.array(tool).max(128).optional(),
  tool_choice: toolChoice.optional(),
  thinking: thinking.optional(),
  output_config: outputConfig.optional(),
};

export const MessagesRequestSchema = z.object({
  ...conversation,
  max_tokens: z.number().int().min(1),
  stop_sequences: z.array(z.string().min(1)).max(16).optional(),
  stream: z.boolean().optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  metadata: z.looseObject({ user_id: z.string().nullish() }).optional(),
  service_tier: z.string().optional(),
});
export type MessagesRequest = z.infer<typeof MessagesRequestSchema>;
export type MessageParam = z.infer<typeof message>;
export type ContentBlockParam = z.infer<typeof contentBlock>;

export const CountTokensRequestSchema = z.object(conversation);
export type CountTokensRequest = z.infer<typeof CountTokensRequestSchema>;
