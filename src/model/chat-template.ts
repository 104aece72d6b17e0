import { Template } from '@huggingface/jinja';
import { ModelLoadError } from './errors.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
  name?: string;
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
  private readonly template: Template;

  constructor(
    tokenizerConfig: Record<string, unknown>,
    private readonly specialTokens: { bosToken?: string; eosToken?: string },
  ) {
    const own = pickTemplate(tokenizerConfig.chat_template);
    this.isFallback = own === undefined;
    this.source = own ?? FALLBACK_CHAT_TEMPLATE;
    try {
      this.template = new Template(this.source);
    } catch (err) {
      throw new ModelLoadError(`tokenizer_config.json: chat_template does not parse (${(err as Error).message})`);
    }
  }

  render(messages: readonly ChatMessage[]): string {
    try {
      return this.template.render({
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: true,
        bos_token: this.specialTokens.bosToken ?? '',
        eos_token: this.specialTokens.eosToken ?? '',
      });
    } catch (err) {
      throw new ChatTemplateError((err as Error).message);
    }
  }
}
