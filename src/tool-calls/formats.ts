import { structuralTagGrammar, type GrammarSpec } from '../grammar/grammar-spec.js';
import { isObject } from '../util/json.js';

/**
 * How a model writes tool calls, detected from its chat template, and what follows from it: the
 * grammar that makes the model call, and how calls are read back out of its text.
 */

export interface FunctionDefinition {
  name: string;
  description?: string;
  /** A JSON schema of the arguments object; absent: any object. */
  parameters?: Record<string, unknown>;
}

/** A call read out of the model's text; `arguments` is the JSON text of an object. */
export interface ParsedToolCall {
  name: string;
  arguments: string;
}

export type ToolCallFormatName = 'hermes' | 'llama3_json' | 'mistral';

export interface ToolCallFormat {
  name: ToolCallFormatName;
  /** Texts that start a call: text from one of them on is held back until it is known whether it is a call. */
  triggers: readonly string[];
  /** Text that ends one call, when the format has one: the call can be sent as soon as it appears. */
  endTag?: string;
  /** The grammar of one or more calls (`parallel`: more than one allowed) to the given functions, and nothing else. */
  callsGrammar(functions: readonly FunctionDefinition[], parallel: boolean): GrammarSpec;
  /** Free text in which calls, once started with a trigger, must be well formed; undefined: no such grammar. */
  autoGrammar(functions: readonly FunctionDefinition[], parallel: boolean): GrammarSpec | undefined;
  /** The calls in `text` (which starts at a trigger), or undefined when it is not a well-formed call. */
  parse(text: string): ParsedToolCall[] | undefined;
  /**
   * How a call that its grammar wrote begins, up to its arguments (group 1: the function's name),
   * and the text after the arguments: what lets a stream send the arguments as they come.
   */
  streamed?: { header: RegExp; tail: string };
}

const argumentsSchema = (fn: FunctionDefinition) => fn.parameters ?? { type: 'object' };

const callTags = (functions: readonly FunctionDefinition[], begin: (name: string) => string, end: string) =>
  functions.map((fn) => ({ type: 'tag', begin: begin(fn.name), content: { type: 'json_schema', json_schema: argumentsSchema(fn) }, end }));

/**
 * A call's arguments as the model wrote them, when `text` is `{"name": …, "arguments": {…}}` with the
 * arguments object last (as the grammars write it): clients see the same text streamed or not.
 */
const NAME_THEN_ARGUMENTS = /^\{\s*"name"\s*:\s*"(?:[^"\\]|\\.)*"\s*,\s*"arguments"\s*:\s*([\s\S]*)\}$/;

function writtenArguments(text: string): string | undefined {
  const match = NAME_THEN_ARGUMENTS.exec(text.trim());
  if (!match) return undefined;
  const written = match[1]!.trim();
  return isObject(safeJson(written)) ? written : undefined;
}

/** `{"name": …, "arguments"|"parameters": {…}}` as a call, else undefined. */
function callObject(value: unknown): ParsedToolCall | undefined {
  if (!isObject(value) || typeof value.name !== 'string') return undefined;
  const args = value.arguments ?? value.parameters ?? {};
  const parsed = typeof args === 'string' ? safeJson(args) : args;
  if (!isObject(parsed)) return undefined;
  return { name: value.name, arguments: JSON.stringify(parsed) };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const jsonString = (text: string) => JSON.stringify(text);

/** Hermes and Qwen: `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>`, one block per call. */
const hermes: ToolCallFormat = {
  name: 'hermes',
  triggers: ['<tool_call>'],
  endTag: '</tool_call>',
  streamed: { header: /^<tool_call>\n\{"name": "((?:[^"\\]|\\.)*)", "arguments": /, tail: '}\n</tool_call>' },
  callsGrammar(functions, parallel) {
    const tags = callTags(functions, (name) => `<tool_call>\n{"name": ${jsonString(name)}, "arguments": `, '}\n</tool_call>');
    return structuralTagGrammar({ type: 'tags_with_separator', tags, separator: '\n', at_least_one: true, stop_after_first: !parallel });
  },
  autoGrammar(functions, parallel) {
    const tags = callTags(functions, (name) => `<tool_call>\n{"name": ${jsonString(name)}, "arguments": `, '}\n</tool_call>');
    return structuralTagGrammar({ type: 'triggered_tags', triggers: ['<tool_call>'], tags, at_least_one: false, stop_after_first: !parallel });
  },
  parse(text) {
    const calls: ParsedToolCall[] = [];
    const block = /<tool_call>([\s\S]*?)<\/tool_call>/g;
    let end = 0;
    for (const match of text.matchAll(block)) {
      if (text.slice(end, match.index).trim() !== '') return undefined;
      const call = callObject(safeJson(match[1]!.trim()));
      if (!call) return undefined;
      calls.push({ ...call, arguments: writtenArguments(match[1]!) ?? call.arguments });
      end = match.index + match[0].length;
    }
    return calls.length > 0 && text.slice(end).trim() === '' ? calls : undefined;
  },
};

/** Llama 3.x: the whole reply is `{"name": …, "parameters": …}` (calls joined by `; `), maybe after `<|python_tag|>`. */
const llama3Json: ToolCallFormat = {
  name: 'llama3_json',
  triggers: ['<|python_tag|>', '{"name"'],
  callsGrammar(functions, parallel) {
    const tags = callTags(functions, (name) => `{"name": ${jsonString(name)}, "parameters": `, '}');
    return structuralTagGrammar({ type: 'tags_with_separator', tags, separator: '; ', at_least_one: true, stop_after_first: !parallel });
  },
  autoGrammar(functions, parallel) {
    const tags = callTags(functions, (name) => `{"name": ${jsonString(name)}, "parameters": `, '}');
    return structuralTagGrammar({ type: 'triggered_tags', triggers: ['{"name": '], tags, at_least_one: false, stop_after_first: !parallel });
  },
  parse(text) {
    const body = text.replace(/^<\|python_tag\|>/, '').trim();
    const whole = safeJson(body);
    const items = Array.isArray(whole) ? whole : whole !== undefined ? [whole] : body.split(/;\s*/).map(safeJson);
    const calls = items.map(callObject);
    return calls.length > 0 && calls.every((call) => call !== undefined) ? (calls as ParsedToolCall[]) : undefined;
  },
};

/**
 * Mistral: `[TOOL_CALLS][{"name": …, "arguments": …}, …]`. `[TOOL_CALLS]` is a special token, left
 * out of the text like every special token, so a reply that is such a list is read as calls too.
 */
const mistral: ToolCallFormat = {
  name: 'mistral',
  triggers: ['[TOOL_CALLS]', '[{"name"'],
  callsGrammar(functions, parallel) {
    const tags = callTags(functions, (name) => `{"name": ${jsonString(name)}, "arguments": `, '}');
    return structuralTagGrammar({
      type: 'tag',
      begin: '[',
      content: { type: 'tags_with_separator', tags, separator: ', ', at_least_one: true, stop_after_first: !parallel },
      end: ']',
    });
  },
  autoGrammar: () => undefined,
  parse(text) {
    const list = safeJson(text.replace(/^\[TOOL_CALLS\]/, '').trim());
    if (!Array.isArray(list) || list.length === 0) return undefined;
    const calls = list.map(callObject);
    return calls.every((call) => call !== undefined) ? (calls as ParsedToolCall[]) : undefined;
  },
};

export const TOOL_CALL_FORMATS: Record<ToolCallFormatName, ToolCallFormat> = { hermes, llama3_json: llama3Json, mistral };

/**
 * The tool-call convention of a chat template, from the markers it writes: `[TOOL_CALLS]`
 * (Mistral), `<|python_tag|>` or Llama 3's `"parameters"` JSON (Llama 3.x), else Hermes
 * `<tool_call>` blocks, which is also what the fallback prompt teaches templates without tools.
 */
export function detectToolCallFormat(template: { source: string; supportsTools: boolean }): ToolCallFormat {
  const { source, supportsTools } = template;
  if (!supportsTools) return hermes;
  if (source.includes('[TOOL_CALLS]')) return mistral;
  if (source.includes('<tool_call>')) return hermes;
  if (source.includes('<|python_tag|>') || source.includes('<|start_header_id|>')) return llama3Json;
  return hermes;
}
