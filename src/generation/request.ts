import type { ChatMessage } from '../model/chat-template.js';
import type { FunctionDefinition } from '../tool-calls/formats.js';

/**
 * The one request every endpoint maps its wire shape to, grouped by concern as TGI's validation
 * groups it: prompts, choices, sampling, stopping, reporting and the output constraint. Fields a
 * client left out are undefined here; defaults are resolved in one place (validate.ts): the request,
 * else the model's generation_config.json, else the server's default.
 */
export interface GenerationRequest {
  /** The model asked for (an id or alias of the served model). */
  model: string;
  prompts: PromptInput;
  choices: { n?: number; bestOf?: number };
  sampling: SamplingRequest;
  stopping: StoppingRequest;
  reporting: ReportingRequest;
  /** What the output must be: a JSON format, or calls to tools. */
  output: OutputRequest;
  /** What errors call the request's fields, in the endpoint's own words. */
  fields: FieldNames;
}

/** Texts (tokenized with the tokenizer's special tokens), token ids, or a conversation for the chat template. */
export type PromptInput =
  | { kind: 'texts'; texts: readonly string[] }
  | { kind: 'token-ids'; ids: readonly (readonly number[])[] }
  | { kind: 'chat'; messages: readonly ChatMessage[]; templateKwargs?: Record<string, unknown> };

export interface StoppingRequest {
  /** What the client asked for; refused when the context cannot hold it. */
  maxTokens?: number;
  /** What the endpoint gives a reply when the client names none, cut to the room the context leaves (undefined: that room). */
  defaultMaxTokens?: number;
  stop: readonly string[];
}

export interface SamplingRequest {
  temperature?: number;
  topP?: number;
  /** Sample from this many most likely tokens only (Anthropic's `top_k`). */
  topK?: number;
  seed?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Token id → bias, as the wire has it (keys are checked against the vocabulary). */
  logitBias?: Record<string, number>;
}

export interface ReportingRequest {
  /** Alternatives reported per generated token; undefined: no log-probabilities. */
  logprobs?: number;
  /** The prompt comes back with the completion (with its log-probabilities when asked for). */
  echo: boolean;
  stream: boolean;
  /** Streams end with a usage chunk. */
  includeUsage: boolean;
}

export type ResponseFormat = { type: 'text' } | { type: 'json_object' } | { type: 'json_schema'; schema?: Record<string, unknown> };

export type ToolChoice = 'none' | 'auto' | 'required' | { name: string };

export interface OutputRequest {
  responseFormat?: ResponseFormat;
  /** Function tools, as the request lists them (absent: none). */
  tools?: readonly FunctionDefinition[];
  toolChoice?: ToolChoice;
  parallelToolCalls?: boolean;
}

/** Where errors point: the names an endpoint gives these fields. */
export interface FieldNames {
  /** The prompt or conversation: `prompt`, `messages`, `input`. */
  prompt: string;
  maxTokens: string;
  responseSchema: string;
  /** A tool's field (`name`, `parameters`) by the tool's place in the list. */
  tool(index: number, field: 'name' | 'parameters'): string;
}

/** The names chat completions (and the completions endpoint) give the fields. */
export const CHAT_FIELDS: FieldNames = {
  prompt: 'messages',
  maxTokens: 'max_tokens',
  responseSchema: 'response_format.json_schema.schema',
  tool: (index, field) => `tools[${index}].function.${field}`,
};
