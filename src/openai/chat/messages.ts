import { catalogueError, invalidRequest } from '../../errors.js';
import { TEMPLATE_VARIABLES, type ChatMessage, type ChatToolCall } from '../../model/chat-template.js';
import { unsupported } from '../common-fields.js';
import { checkJsonDepth } from '../parse-body.js';
import type { ChatRequestMessage } from '../schemas.js';

/** Chat messages as the wire has them → as the chat template reads them. */

/** `chat_template_kwargs`, refused when they name one of the template's own variables (a 400 naming it). */
export function templateKwargs(kwargs: Record<string, unknown> | null | undefined): Record<string, unknown> | undefined {
  if (!kwargs) return undefined;
  for (const name of TEMPLATE_VARIABLES) {
    if (Object.hasOwn(kwargs, name)) {
      throw invalidRequest(
        `'chat_template_kwargs.${name}' cannot be set: the server gives the template '${name}' itself${name === 'tools' ? " (send 'tools' in the request instead)" : name === 'messages' ? " (send 'messages' in the request instead)" : ''}.`,
        `chat_template_kwargs.${name}`,
        'invalid_value',
      );
    }
  }
  return kwargs;
}

/** Text parts joined into one string, a line break between two, as vLLM joins them. */
function contentText(content: string | { type: string; text?: string }[] | null | undefined, param: string): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content
    .map((part, partIndex) => {
      const partParam = `${param}[${partIndex}]`;
      if (part.type !== 'text') throw unsupported(`${partParam}.type`, `Content of type '${part.type}'`);
      if (typeof part.text !== 'string') throw catalogueError('missing_required_parameter', [`${partParam}.text`], `${partParam}.text`);
      return part.text;
    })
    .join('\n');
}

/**
 * A call of an earlier assistant message, its arguments as the client wrote them (the template
 * parses them); where they are JSON, no deeper than the body may nest, counted from their own root.
 */
export function templateToolCall(call: { id: string; function: { name: string; arguments: string } }, param: string, maxJsonDepth: number): ChatToolCall {
  let parsed: unknown;
  try {
    parsed = JSON.parse(call.function.arguments);
  } catch {
    // Not JSON: the template gets the text as it is.
  }
  checkJsonDepth(parsed, maxJsonDepth, param);
  return { id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } };
}

/** A message as the chat template sees it: text parts joined, `developer` as `system`, tool calls with their arguments parsed. */
export function templateMessage(message: ChatRequestMessage, index: number, maxJsonDepth: number): ChatMessage {
  const content = contentText(message.content, `messages[${index}].content`);
  if (message.role === 'tool') return { role: 'tool', content, tool_call_id: message.tool_call_id, ...(message.name !== undefined && { name: message.name }) };
  if (message.role === 'assistant') {
    if ((message.content === null || message.content === undefined) && !message.tool_calls?.length) {
      throw invalidRequest(`Invalid value for 'messages[${index}].content': an assistant message needs content or tool_calls.`, `messages[${index}].content`, 'invalid_value');
    }
    const { role: _role, content: _content, name: _name, tool_calls: _calls, ...others } = message;
    return {
      // Whatever else the message holds reaches the template as given (reasoning_content, say).
      ...others,
      role: 'assistant',
      content,
      ...(message.name !== undefined && { name: message.name }),
      ...(message.tool_calls?.length && {
        tool_calls: message.tool_calls.map((call, callIndex) => templateToolCall(call, `messages[${index}].tool_calls[${callIndex}].function.arguments`, maxJsonDepth)),
      }),
    };
  }
  return {
    role: message.role === 'developer' ? 'system' : message.role,
    content,
    ...(message.name !== undefined && { name: message.name }),
  };
}
