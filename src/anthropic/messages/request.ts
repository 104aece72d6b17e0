import { invalidRequest } from '../../errors.js';
import type { ChatMessage, ChatToolCall } from '../../model/chat-template.js';
import type { FieldNames, GenerationRequest, OutputRequest, ToolChoice } from '../../generation/request.js';
import type { FunctionDefinition } from '../../tool-calls/formats.js';
import type { ContentBlockParam, CountTokensRequest, MessageParam, MessagesRequest } from '../schemas.js';

/** Messages API requests as the generation request: the same core as the OpenAI routes, read from Anthropic's own shapes. */

/** Where errors point, in the Messages API's words. */
export const MESSAGES_FIELDS: FieldNames = {
  prompt: 'messages',
  maxTokens: 'max_tokens',
  responseSchema: 'output_config.format.schema',
  tool: (index, field) => (field === 'name' ? `tools[${index}].name` : `tools[${index}].input_schema`),
};

const unsupportedBlock = (param: string, type: string) =>
  invalidRequest(`${param}: content blocks of type '${type}' are not supported by this server.`, param, 'unsupported_value');

function requireString(block: ContentBlockParam, field: string, param: string): string {
  const value = block[field];
  if (typeof value !== 'string') throw invalidRequest(`${param}.${field}: Field required (a string).`, `${param}.${field}`, 'invalid_type');
  return value;
}

/** The text of a `tool_result`'s content: a string, or text blocks joined as text parts are. */
function toolResultText(content: unknown, param: string): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalidRequest(`${param}: must be a string or an array of content blocks.`, param, 'invalid_type');
  return content
    .map((block: ContentBlockParam, index) => {
      if (block?.type !== 'text') throw unsupportedBlock(`${param}[${index}]`, String(block?.type));
      return requireString(block, 'text', `${param}[${index}]`);
    })
    .join('\n');
}

/**
 * One Anthropic message as chat-template messages: a user turn's `tool_result` blocks become `tool`
 * messages (before its text, in order), an assistant turn's `tool_use` blocks its calls and its
 * `thinking` blocks its `reasoning_content`.
 */
function templateMessages(message: MessageParam, index: number): ChatMessage[] {
  const param = `messages[${index}].content`;
  const blocks: ContentBlockParam[] = typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content;
  const texts: string[] = [];
  const results: ChatMessage[] = [];
  const calls: ChatToolCall[] = [];
  const thoughts: string[] = [];
  blocks.forEach((block, blockIndex) => {
    const at = `${param}[${blockIndex}]`;
    switch (message.role === 'user' ? `user:${block.type}` : `assistant:${block.type}`) {
      case 'user:text':
      case 'assistant:text':
        texts.push(requireString(block, 'text', at));
        return;
      case 'user:tool_result':
        results.push({
          role: 'tool',
          tool_call_id: requireString(block, 'tool_use_id', at),
          content: toolResultText(block.content, `${at}.content`),
          ...(block.is_error === true && { is_error: true }),
        });
        return;
      case 'assistant:tool_use': {
        const input = block.input ?? {};
        calls.push({ id: requireString(block, 'id', at), type: 'function', function: { name: requireString(block, 'name', at), arguments: JSON.stringify(input) } });
        return;
      }
      case 'assistant:thinking':
        thoughts.push(requireString(block, 'thinking', at));
        return;
      default:
        throw unsupportedBlock(at, block.type);
    }
  });
  if (message.role === 'user') {
    return [...results, ...(texts.length > 0 || results.length === 0 ? [{ role: 'user' as const, content: texts.join('\n') }] : [])];
  }
  return [
    {
      role: 'assistant',
      content: texts.join('\n'),
      ...(calls.length > 0 && { tool_calls: calls }),
      ...(thoughts.length > 0 && { reasoning_content: thoughts.join('\n') }),
    },
  ];
}

/** The conversation (system prompt first) as chat-template messages. */
export function conversationMessages(body: Pick<MessagesRequest, 'system' | 'messages'>): ChatMessage[] {
  const system = typeof body.system === 'string' ? body.system : body.system?.map((block) => block.text).join('\n');
  return [...(system ? [{ role: 'system' as const, content: system }] : []), ...body.messages.flatMap(templateMessages)];
}

/** `thinking` and `output_config.effort` as the variables templates of reasoning models read. */
export function conversationKwargs(body: Pick<MessagesRequest, 'thinking' | 'output_config'>): Record<string, unknown> | undefined {
  const kwargs: Record<string, unknown> = {};
  if (body.thinking) kwargs.enable_thinking = body.thinking.type !== 'disabled';
  const effort = body.output_config?.effort;
  if (effort) kwargs.reasoning_effort = effort;
  return Object.keys(kwargs).length > 0 ? kwargs : undefined;
}

function toolChoice(choice: NonNullable<MessagesRequest['tool_choice']>): ToolChoice {
  switch (choice.type) {
    case 'auto':
      return 'auto';
    case 'any':
      return 'required';
    case 'none':
      return 'none';
    case 'tool':
      return { name: choice.name };
  }
}

/** The request's tools as function definitions (none for an empty list). */
export function functionDefinitions(body: Pick<CountTokensRequest, 'tools'>): FunctionDefinition[] | undefined {
  if (!body.tools?.length) return undefined;
  return body.tools.map((tool) => ({ name: tool.name, ...(tool.description !== undefined && { description: tool.description }), parameters: tool.input_schema }));
}

function outputRequest(body: MessagesRequest): OutputRequest {
  const format = body.output_config?.format;
  const choice = body.tool_choice;
  const tools = functionDefinitions(body);
  return {
    ...(format && { responseFormat: { type: 'json_schema', schema: format.schema } }),
    ...(tools && { tools }),
    ...(choice && body.tools?.length && { toolChoice: toolChoice(choice) }),
    ...(choice && choice.type !== 'none' && choice.disable_parallel_tool_use !== undefined && { parallelToolCalls: !choice.disable_parallel_tool_use }),
  };
}

/** `POST /v1/messages` as a generation request. */
export function messagesRequest(body: MessagesRequest): GenerationRequest {
  if (body.tool_choice && body.tool_choice.type !== 'none' && !body.tools?.length) {
    throw invalidRequest('tool_choice: tools must be given when tool_choice is set.', 'tool_choice', 'invalid_value');
  }
  const kwargs = conversationKwargs(body);
  return {
    model: body.model,
    prompts: { kind: 'chat', messages: conversationMessages(body), ...(kwargs && { templateKwargs: kwargs }) },
    choices: {},
    sampling: {
      ...(body.temperature !== undefined && { temperature: body.temperature }),
      ...(body.top_p !== undefined && { topP: body.top_p }),
      ...(body.top_k !== undefined && { topK: body.top_k }),
    },
    stopping: { maxTokens: body.max_tokens, stop: body.stop_sequences ?? [] },
    reporting: { echo: false, stream: !!body.stream, includeUsage: false },
    output: outputRequest(body),
    fields: MESSAGES_FIELDS,
  };
}
