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
  /** On an `assistant` message: its thinking, which templates of reasoning models render back. */
  reasoning_content?: string | null;
  /** Other fields of an assistant message, passed to the template as given. */
  [field: string]: unknown;
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

/** The variables the server gives a template itself; extra variables cannot replace them. */
export const TEMPLATE_VARIABLES: readonly string[] = ['messages', 'tools', 'add_generation_prompt', 'bos_token', 'eos_token'];

export interface RenderOptions {
  /** Default true: the prompt ends where the assistant's reply begins. */
  addGenerationPrompt?: boolean;
  /** More variables for the template (a request's `chat_template_kwargs`: `enable_thinking`, say); they cannot replace the messages, tools or special tokens. */
  kwargs?: Record<string, unknown>;
}

/** Raised when a template refuses a conversation (roles out of order, say). */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
}

/** tokenizer_config.json's `chat_template`: one text, or named templates (a list, or an object by name). */
export function namedTemplates(value: unknown): Map<string, string> {
  const named = new Map<string, string>();
  if (typeof value === 'string') named.set('default', value);
  else if (Array.isArray(value)) {
    for (const entry of value as { name?: unknown; template?: unknown }[]) {
      if (typeof entry?.name === 'string' && typeof entry.template === 'string') named.set(entry.name, entry.template);
    }
  } else if (typeof value === 'object' && value !== null) {
    for (const [name, template] of Object.entries(value)) if (typeof template === 'string') named.set(name, template);
  }
  return named;
}

function parse(source: string, name: string): Template {
  try {
    return new Template(source);
  } catch (err) {
    throw new ModelLoadError(`chat_template (${name}) does not parse (${(err as Error).message})`);
  }
}

/**
 * Renders chat messages into the prompt text the model was trained on, with the model's `default`
 * template, or its `tool_use` template (where it has one) when the request has tools, as Hugging
 * Face's apply_chat_template does.
 */
export class ChatTemplate {
  /** The template a request with tools is rendered with. */
  readonly source: string;
  readonly isFallback: boolean;
  /** The template renders tools, tool calls and tool results itself (it reads `tools`). */
  readonly supportsTools: boolean;
  private readonly template: Template;
  private readonly toolTemplate: Template;

  constructor(
    tokenizerConfig: Record<string, unknown>,
    private readonly specialTokens: { bosToken?: string; eosToken?: string },
  ) {
    const named = namedTemplates(tokenizerConfig.chat_template);
    const own = named.get('default');
    this.isFallback = own === undefined;
    const plain = own ?? FALLBACK_CHAT_TEMPLATE;
    this.template = parse(plain, 'default');
    const toolUse = named.get('tool_use');
    this.source = toolUse ?? plain;
    this.toolTemplate = toolUse === undefined ? this.template : parse(toolUse, 'tool_use');
    this.supportsTools = /\btools\b/.test(this.source);
  }

  /** The prompt text of a conversation; `tools` are given to the template, or through the tools prompt when it has no use for them. */
  render(messages: readonly ChatMessage[], tools?: ChatTools, { addGenerationPrompt = true, kwargs = {} }: RenderOptions = {}): string {
    const given = this.supportsTools ? messages : withoutToolSupport(messages, tools);
    // As apply_chat_template: tools given (an empty list too) choose the tool_use template and reach the template as given.
    const template = tools !== undefined ? this.toolTemplate : this.template;
    try {
      const extra = Object.fromEntries(Object.entries(kwargs).filter(([name]) => !TEMPLATE_VARIABLES.includes(name)));
      return template.render({
        ...extra,
        messages: given.map((m) => ({ ...m })),
        ...(this.supportsTools && tools !== undefined && { tools }),
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.specialTokens.bosToken ?? '',
        eos_token: this.specialTokens.eosToken ?? '',
      });
    } catch (err) {
      throw new ChatTemplateError((err as Error).message);
    }
  }
}
