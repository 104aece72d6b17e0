import { Template } from '@huggingface/jinja';
import { ModelLoadError } from './errors.js';

/** A call an assistant message made, as templates read it: `arguments` parsed to an object where it is JSON. */
export interface ChatToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: unknown };
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  name?: string;
  tool_calls?: ChatToolCall[];
  /** On a `tool` message: the call it answers. */
  tool_call_id?: string;
}

/** The tools a conversation may call, as OpenAI's request lists them. */
export type ChatTools = { type: 'function'; function: { name: string; description?: string; parameters?: Record<string, unknown> } }[];

/**
 * For templates that do not render tools: a system prompt that lists them and teaches the Hermes
 * `<tool_call>` convention, which is also how calls are read back for such templates.
 */
export function toolsPrompt(tools: ChatTools): string {
  const list = tools.map((tool) => JSON.stringify(tool)).join('\n');
  return (
    'You may call one or more functions to help with the request. The functions are listed here as JSON:\n' +
    `<tools>\n${list}\n</tools>\n` +
    'To call a function, reply with a JSON object holding its name and arguments inside <tool_call></tool_call> tags:\n' +
    '<tool_call>\n{"name": <function-name>, "arguments": <arguments-json-object>}\n</tool_call>'
  );
}

const hermesCall = (call: ChatToolCall) =>
  `<tool_call>\n${JSON.stringify({ name: call.function.name, arguments: call.function.arguments })}\n</tool_call>`;

/**
 * A conversation with tools, rewritten for a template that knows nothing of them: the tools
 * prompt joins the system message (or becomes one), an assistant's calls become `<tool_call>`
 * blocks in its text, and a tool's result becomes a user message in `<tool_response>` tags.
 */
export function withoutToolSupport(messages: readonly ChatMessage[], tools: ChatTools | undefined): ChatMessage[] {
  const plain = messages.map((message): ChatMessage => {
    if (message.role === 'tool') return { role: 'user', content: `<tool_response>\n${message.content}\n</tool_response>` };
    if (message.tool_calls?.length) {
      const calls = message.tool_calls.map(hermesCall).join('\n');
      return { role: 'assistant', content: message.content ? `${message.content}\n${calls}` : calls };
    }
    return message;
  });
  if (!tools?.length) return plain;
  const prompt = toolsPrompt(tools);
  const first = plain[0];
  if (first?.role === 'system') return [{ ...first, content: `${first.content}\n\n${prompt}` }, ...plain.slice(1)];
  return [{ role: 'system', content: prompt }, ...plain];
}

/**
 * The template used for models whose tokenizer_config.json has no `chat_template`:
 * one `role: content` line per message and an `assistant:` cue for the reply.
 */
export const FALLBACK_CHAT_TEMPLATE =
  "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}";

/** Raised when a template refuses a conversation (roles out of order, say). */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
}

function pickTemplate(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find(
      (entry): entry is { name: string; template: string } =>
        typeof entry === 'object' && entry !== null && (entry as { name?: unknown }).name === 'default',
    );
    return typeof named?.template === 'string' ? named.template : undefined;
  }
  if (typeof value === 'object' && value !== null) {
    const entry = (value as Record<string, unknown>).default;
    return typeof entry === 'string' ? entry : undefined;
  }
  return undefined;
}

/** Renders chat messages into the prompt text the model was trained on. */
export class ChatTemplate {
  readonly source: string;
  readonly isFallback: boolean;
  /** The template renders tools, tool calls and tool results itself (it reads `tools`). */
  readonly supportsTools: boolean;
  private readonly template: Template;

  constructor(
    tokenizerConfig: Record<string, unknown>,
    private readonly specialTokens: { bosToken?: string; eosToken?: string },
  ) {
    const own = pickTemplate(tokenizerConfig.chat_template);
    this.isFallback = own === undefined;
    this.source = own ?? FALLBACK_CHAT_TEMPLATE;
    this.supportsTools = /\btools\b/.test(this.source);
    try {
      this.template = new Template(this.source);
    } catch (err) {
      throw new ModelLoadError(`tokenizer_config.json: chat_template does not parse (${(err as Error).message})`);
    }
  }

  /** The prompt text of a conversation; `tools` are given to the template, or through the tools prompt when it has no use for them. */
  render(messages: readonly ChatMessage[], tools?: ChatTools, addGenerationPrompt = true): string {
    const given = this.supportsTools ? messages : withoutToolSupport(messages, tools);
    try {
      return this.template.render({
        messages: given.map((m) => ({ ...m })),
        ...(this.supportsTools && tools?.length && { tools }),
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.specialTokens.bosToken ?? '',
        eos_token: this.specialTokens.eosToken ?? '',
      });
    } catch (err) {
      throw new ChatTemplateError((err as Error).message);
    }
  }
}
