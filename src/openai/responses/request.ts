import type { RequestLimits } from '../../options.js';
import { catalogueError, invalidRequest, type InvalidRequestCode } from '../../errors.js';
import type { FieldNames, GenerationRequest, OutputRequest } from '../../generation/request.js';
import type { ChatMessage } from '../../model/chat-template.js';
import { given } from '../common-fields.js';
import { templateToolCall } from '../chat/messages.js';
import { parseBody } from '../parse-body.js';
import { REASONING_EFFORTS, type ResponseRequest } from '../schemas.js';
import { z } from 'zod';

/**
 * A Responses request as a generation request: its input items become the conversation the chat
 * template renders, its tools and text format the output request. Errors name the Responses fields.
 */

export const LOGPROBS_INCLUDE = 'message.output_text.logprobs';

const RESPONSE_FIELDS: FieldNames = {
  prompt: 'input',
  maxTokens: 'max_output_tokens',
  responseSchema: 'text.format.schema',
  tool: (index, field) => `tools[${index}].${field}`,
};

const unsupported = (message: string, param: string, code: InvalidRequestCode = 'unsupported_parameter') => invalidRequest(message, param, code);

const textPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const messageItem = z.object({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(textPart)], { error: 'must be a string or an array of input_text parts' }),
});
const functionCallItem = z.object({ type: z.literal('function_call'), call_id: z.string(), name: z.string(), arguments: z.string() });
const functionCallOutputItem = z.object({
  type: z.literal('function_call_output'),
  call_id: z.string(),
  output: z.union([z.string(), z.array(textPart)], { error: 'must be a string or an array of input_text parts' }),
});

/** The text of a message's content: a string, or text parts joined with a line break between two (as chat messages' parts). */
function contentText(content: string | { type: string; text?: string | undefined }[], param: string): string {
  if (typeof content === 'string') return content;
  return content
    .map((part, index) => {
      if (part.type !== 'input_text' && part.type !== 'output_text' && part.type !== 'text') {
        throw unsupported(`Content of type '${part.type}' is not supported by this server (yet): only text.`, `${param}[${index}].type`);
      }
      return part.text ?? '';
    })
    .join('\n');
}

/** The conversation of a request, the instructions first as a system message. */
function conversation(body: ResponseRequest, limits: RequestLimits): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (body.instructions) messages.push({ role: 'system', content: body.instructions });
  if (typeof body.input === 'string') {
    messages.push({ role: 'user', content: body.input });
    return messages;
  }
  body.input.forEach((item, index) => {
    const at = `input[${index}]`;
    const type = item.type ?? 'message';
    if (type === 'message') {
      const message = parseBody(messageItem, item, at);
      messages.push({ role: message.role === 'developer' ? 'system' : message.role, content: contentText(message.content, `${at}.content`) });
    } else if (type === 'function_call') {
      const call = parseBody(functionCallItem, item, at);
      const toolCall = templateToolCall({ id: call.call_id, function: { name: call.name, arguments: call.arguments } }, `${at}.arguments`, limits.maxJsonDepth);
      const last = messages[messages.length - 1];
      // An assistant's text and the calls after it, or calls made together, are one assistant turn.
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), toolCall];
      else messages.push({ role: 'assistant', content: '', tool_calls: [toolCall] });
    } else if (type === 'function_call_output') {
      const output = parseBody(functionCallOutputItem, item, at);
      messages.push({ role: 'tool', tool_call_id: output.call_id, content: contentText(output.output, `${at}.output`) });
    } else if (type === 'item_reference') {
      throw unsupported(`This server stores no responses, so '${at}' cannot refer to an earlier item: send the item itself.`, at, 'unsupported_value');
    } else {
      throw unsupported(`Input items of type '${type}' are not supported by this server: send messages, function_call and function_call_output items.`, `${at}.type`, 'unsupported_value');
    }
  });
  return messages;
}

/** What this server cannot offer, refused by name. */
export function refuseUnsupported(body: ResponseRequest): void {
  const isGiven = (value: unknown) => value !== undefined && value !== null;
  if (isGiven(body.previous_response_id)) throw unsupported("This server stores no responses: 'previous_response_id' cannot be used; send the whole conversation as 'input'.", 'previous_response_id');
  if (isGiven(body.conversation)) throw unsupported("This server stores no conversations: 'conversation' cannot be used; send the whole conversation as 'input'.", 'conversation');
  if (body.store === true) throw unsupported("This server stores no responses: leave 'store' out or set it to false.", 'store', 'unsupported_value');
  if (isGiven(body.background) && body.background !== false) throw unsupported('Background responses need stored state, which this server does not keep.', 'background');
  if (isGiven(body.prompt)) throw unsupported("Stored prompt templates ('prompt') are not available on this server.", 'prompt');
  if (body.truncation === 'auto') throw unsupported("'truncation: auto' is not supported: an input too long for the context is a 400.", 'truncation', 'unsupported_value');
  const reasoning = body.reasoning as { effort?: unknown; summary?: unknown } | null | undefined;
  if (isGiven(reasoning) && isGiven(reasoning!.summary)) {
    throw unsupported("'reasoning.summary' is not supported: this server does not summarise a model's thinking.", 'reasoning.summary');
  }
  if (isGiven(reasoning) && isGiven(reasoning!.effort) && !(REASONING_EFFORTS as readonly unknown[]).includes(reasoning!.effort)) {
    throw invalidRequest(`Invalid value for 'reasoning.effort': expected one of ${REASONING_EFFORTS.join(', ')}.`, 'reasoning.effort', 'invalid_value');
  }
  body.include?.forEach((value, index) => {
    if (value !== LOGPROBS_INCLUDE) throw unsupported(`'${value}' cannot be included by this server; only '${LOGPROBS_INCLUDE}'.`, `include[${index}]`, 'unsupported_value');
  });
}

/** Function tools, the tool choice and the text format. */
function outputRequest(body: ResponseRequest): OutputRequest {
  const tools = body.tools?.map((tool, index) => {
    if (tool.type !== 'function') {
      throw unsupported(`The built-in tool '${tool.type}' is not available on this server: only function tools.`, `tools[${index}].type`, 'unsupported_value');
    }
    if (tool.name === undefined) throw catalogueError('missing_required_parameter', [`tools[${index}].name`], `tools[${index}].name`);
    return { name: tool.name, ...(given(tool.description) !== undefined && { description: tool.description! }), ...(tool.parameters && { parameters: tool.parameters }) };
  });
  const choice = given(body.tool_choice);
  let toolChoice: OutputRequest['toolChoice'];
  if (typeof choice === 'string') toolChoice = choice;
  else if (choice) {
    if (choice.type !== 'function' || typeof choice.name !== 'string') {
      throw unsupported(`'tool_choice' of type '${choice.type}' is not supported: give "none", "auto", "required" or {"type": "function", "name": ...}.`, 'tool_choice', 'unsupported_value');
    }
    toolChoice = { name: choice.name };
  }
  const format = given(body.text?.format);
  return {
    ...(tools && { tools }),
    ...(toolChoice !== undefined && { toolChoice }),
    ...(given(body.parallel_tool_calls) !== undefined && { parallelToolCalls: body.parallel_tool_calls! }),
    ...(format && { responseFormat: format.type === 'json_schema' ? { type: 'json_schema', schema: format.schema } : { type: format.type } }),
  };
}

/** `reasoning.effort`, once refuseUnsupported has checked it is one of REASONING_EFFORTS. */
export function reasoningEffort(body: ResponseRequest): (typeof REASONING_EFFORTS)[number] | undefined {
  return given((body.reasoning as { effort?: (typeof REASONING_EFFORTS)[number] | null } | null | undefined)?.effort);
}

/** `POST /v1/responses` as a generation request. */
export function responseRequest(body: ResponseRequest, limits: RequestLimits): GenerationRequest {
  const messages = conversation(body, limits);
  const output = outputRequest(body);
  const logprobs = body.include?.includes(LOGPROBS_INCLUDE) || given(body.top_logprobs) !== undefined ? (body.top_logprobs ?? 0) : undefined;
  const maxTokens = given(body.max_output_tokens);
  // Given to the chat template as `reasoning_effort`, as chat completions' field of that name.
  const effort = reasoningEffort(body);
  return {
    model: body.model,
    prompts: { kind: 'chat', messages, ...(effort !== undefined && { templateKwargs: { reasoning_effort: effort } }) },
    choices: {},
    sampling: { ...(given(body.temperature) !== undefined && { temperature: body.temperature! }), ...(given(body.top_p) !== undefined && { topP: body.top_p! }) },
    stopping: { ...(maxTokens !== undefined && { maxTokens }), stop: [] },
    reporting: { ...(logprobs !== undefined && { logprobs }), echo: false, stream: !!body.stream, includeUsage: false },
    output,
    fields: RESPONSE_FIELDS,
  };
}
