import { isSafeNumber, parse as parseJson } from 'lossless-json';
import { Template } from './jinja/index.js';
import { PythonFloat, TextBackedMapping } from './jinja/runtime.js';
import { ModelLoadError } from './errors.js';

/** A call an assistant message made: `arguments` is the client's text, which templates read through templateArguments. */
export interface ChatToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A JSON number as Python's json.loads reads it: an int of any size, or a float (`2.0` stays a float). */
function pythonNumber(text: string): unknown {
  if (/[.eE]/.test(text)) return new PythonFloat(Number(text));
  return isSafeNumber(text) ? Number(text) : BigInt(text);
}

/**
 * An earlier call's arguments as the template reads them: parsed where they are JSON, as vLLM parses
 * them, without loss (big integers, `2.0` and exponents print as Python prints them); an object also
 * keeps the client's text, which is what the template gets where it prints the arguments or joins
 * them to a string. Text that is not JSON stays the string it is.
 */
export function templateArguments(text: string): unknown {
  let parsed: unknown;
  try {
    parsed = parseJson(text, null, pythonNumber);
  } catch {
    return text;
  }
  if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) && !(parsed instanceof PythonFloat)) {
    return new TextBackedMapping(text, parsed as Record<string, unknown>);
  }
  return parsed;
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

function hermesCall(call: ChatToolCall): string {
  const args = call.function.arguments;
  let argumentsJson = JSON.stringify(args);
  try {
    JSON.parse(args);
    argumentsJson = args;
  } catch {
    // Not JSON: written as a JSON string.
  }
  return `<tool_call>\n{"name":${JSON.stringify(call.function.name)},"arguments":${argumentsJson}}\n</tool_call>`;
}

/** A message as the template's variables hold it: each tool call's arguments through templateArguments. */
function templateVariable(message: ChatMessage): Record<string, unknown> {
  if (!message.tool_calls) return { ...message };
  return {
    ...message,
    tool_calls: message.tool_calls.map((call) => ({ ...call, function: { ...call.function, arguments: templateArguments(call.function.arguments) } })),
  };
}

/**
 * A conversation with tools, rewritten for a template that knows nothing of them: the tools
 * prompt joins the system message, or opens the first user message where there is none (some
 * templates refuse a system role), an assistant's calls become `<tool_call>` blocks in its text,
 * and a tool's result becomes a user message in `<tool_response>` tags.
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
  const user = plain.findIndex((message) => message.role === 'user');
  if (user === -1) return [{ role: 'user', content: prompt }, ...plain];
  return plain.map((message, index) => (index === user ? { ...message, content: `${prompt}\n\n${message.content}` } : message));
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
  /** The time `strftime_now` formats (the current time when not given). */
  now?: Date;
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
  /** The template renders tools or tool calls itself (it reads `tools` or a message's `tool_calls`). */
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
    this.supportsTools = /\b(?:tools|tool_calls)\b/.test(this.source);
  }

  /** The prompt text of a conversation; `tools` are given to the template, or through the tools prompt when it has no use for them. */
  render(messages: readonly ChatMessage[], tools?: ChatTools, options: RenderOptions = {}): string {
    return this.renderAsGiven(this.supportsTools ? messages : withoutToolSupport(messages, tools), tools, options);
  }

  /** The prompt text exactly as transformers' apply_chat_template renders the conversation, with no tools prompt added. */
  renderAsGiven(messages: readonly ChatMessage[], tools?: ChatTools, { addGenerationPrompt = true, kwargs = {}, now }: RenderOptions = {}): string {
    // As apply_chat_template: tools given (an empty list too) choose the tool_use template and reach the template as given.
    const template = tools !== undefined ? this.toolTemplate : this.template;
    try {
      const extra = Object.fromEntries(Object.entries(kwargs).filter(([name]) => !TEMPLATE_VARIABLES.includes(name)));
      // The variables apply_chat_template gives: tools and documents are None when not given, and a special token the tokenizer does not set is left undefined.
      const { bosToken, eosToken } = this.specialTokens;
      return template.render({
        ...extra,
        messages: messages.map(templateVariable),
        tools: tools ?? null,
        documents: null,
        add_generation_prompt: addGenerationPrompt,
        ...(bosToken !== undefined && { bos_token: bosToken }),
        ...(eosToken !== undefined && { eos_token: eosToken }),
      }, { now });
    } catch (err) {
      throw new ChatTemplateError((err as Error).message);
    }
  }
}
