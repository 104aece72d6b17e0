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

export type ToolCallFormatName =
  | 'hermes'
  | 'llama3_json'
  | 'mistral'
  | 'deepseek_v3'
  | 'deepseek_v31'
  | 'kimi_k2'
  | 'granite'
  | 'functionary_v3_1'
  | 'functionary_v3_2'
  | 'command_r7b';

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

/** `{"name"|"tool_name": …, "arguments"|"parameters": {…}}` as a call, else undefined. */
function callObject(value: unknown): ParsedToolCall | undefined {
  if (!isObject(value)) return undefined;
  const name = value.name ?? value.tool_name;
  if (typeof name !== 'string') return undefined;
  const args = value.arguments ?? value.parameters ?? {};
  const parsed = typeof args === 'string' ? safeJson(args) : args;
  if (!isObject(parsed)) return undefined;
  return { name, arguments: JSON.stringify(parsed) };
}

/** A call whose name and arguments the markup gives apart: the arguments must be a JSON object, kept as written. */
function namedCall(name: string | undefined, written: string | undefined): ParsedToolCall | undefined {
  if (name === undefined || written === undefined) return undefined;
  const text = written.trim();
  return isObject(safeJson(text)) ? { name: name.trim(), arguments: text } : undefined;
}

/**
 * Calls that are all of `text` but whitespace: every match of `call` (group 1 the name, group 2 the
 * arguments), inside one or more `section`s (group 1 the calls) where the format wraps them.
 */
function markedCalls(text: string, call: RegExp, section?: RegExp): ParsedToolCall[] | undefined {
  const bodies: string[] = [];
  if (section) {
    let end = 0;
    for (const match of text.matchAll(section)) {
      if (text.slice(end, match.index).trim() !== '') return undefined;
      bodies.push(match[1]!);
      end = match.index + match[0].length;
    }
    if (text.slice(end).trim() !== '') return undefined;
  } else {
    bodies.push(text);
  }
  const calls: ParsedToolCall[] = [];
  for (const body of bodies) {
    let end = 0;
    for (const match of body.matchAll(call)) {
      if (body.slice(end, match.index).trim() !== '') return undefined;
      const parsed = namedCall(match[1], match[2]);
      if (!parsed) return undefined;
      calls.push(parsed);
      end = match.index + match[0].length;
    }
    if (body.slice(end).trim() !== '') return undefined;
  }
  return calls.length > 0 ? calls : undefined;
}

/**
 * A format whose calls are one JSON list of call objects after a marker (which the text may lack,
 * where the tokenizer marks it special): the grammar writes `begin`, the calls joined by `, `, `]`
 * and the end marker.
 */
function listedFormat(spec: {
  name: ToolCallFormatName;
  marker: string;
  endMarker?: string;
  triggers: string[];
  begin: string;
  callBegin: (name: string) => string;
}): ToolCallFormat {
  const { marker, endMarker = '' } = spec;
  return {
    name: spec.name,
    triggers: spec.triggers,
    ...(endMarker && { endTag: endMarker }),
    callsGrammar(functions, parallel) {
      const tags = callTags(functions, spec.callBegin, '}');
      return structuralTagGrammar({
        type: 'tag',
        begin: spec.begin,
        content: { type: 'tags_with_separator', tags, separator: ', ', at_least_one: true, stop_after_first: !parallel },
        end: `]${endMarker}`,
      });
    },
    autoGrammar: () => undefined,
    parse(text) {
      let body = text.trim();
      if (body.startsWith(marker)) body = body.slice(marker.length);
      if (endMarker && body.endsWith(endMarker)) body = body.slice(0, -endMarker.length);
      const list = safeJson(body.trim());
      if (!Array.isArray(list) || list.length === 0) return undefined;
      const calls = list.map(callObject);
      return calls.every((call) => call !== undefined) ? (calls as ParsedToolCall[]) : undefined;
    },
  };
}

/**
 * A format whose calls sit between fixed markers, optionally inside a section: each call is
 * `callPrefix`, the rest of its beginning (with the function's name), its arguments, `callEnd`.
 * `callsGrammar` writes one section of calls back to back, `autoGrammar` lets free text start a
 * section (or a call, where there are no sections) at its first marker.
 */
function markedFormat(spec: {
  name: ToolCallFormatName;
  sectionBegin?: string;
  sectionEnd?: string;
  callPrefix: string;
  callRest: (name: string) => string;
  callEnd: string;
  /** The model ends a call with nothing of its own (the grammar's `callEnd` is only a line break), so no text tells a call is complete. */
  openEnded?: boolean;
  call: RegExp;
  section?: RegExp;
}): ToolCallFormat {
  const { sectionBegin = '', sectionEnd = '', callPrefix, callEnd } = spec;
  const trigger = sectionBegin || callPrefix;
  return {
    name: spec.name,
    triggers: [trigger],
    ...(!spec.openEnded && { endTag: sectionEnd || callEnd }),
    callsGrammar(functions, parallel) {
      // Back to back: the grammar engine takes no empty separator, so the calls' common prefix is one.
      const calls = {
        type: 'sequence',
        elements: [
          { type: 'const_string', value: callPrefix },
          { type: 'tags_with_separator', tags: callTags(functions, spec.callRest, callEnd), separator: callPrefix, at_least_one: true, stop_after_first: !parallel },
        ],
      };
      return structuralTagGrammar(sectionBegin ? { type: 'tag', begin: sectionBegin, content: calls, end: sectionEnd } : calls);
    },
    autoGrammar(functions, parallel) {
      const tags = callTags(functions, (name) => sectionBegin + callPrefix + spec.callRest(name), callEnd + sectionEnd);
      return structuralTagGrammar({ type: 'triggered_tags', triggers: [trigger], tags, at_least_one: false, stop_after_first: !parallel });
    },
    parse: (text) => markedCalls(text, spec.call, spec.section),
  };
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
const mistral = listedFormat({
  name: 'mistral',
  // The grammar writes no [TOOL_CALLS]: it is a special token, left out of the text.
  marker: '[TOOL_CALLS]',
  triggers: ['[TOOL_CALLS]', '[{"name"'],
  begin: '[',
  callBegin: (name) => `{"name": ${jsonString(name)}, "arguments": `,
});

const NAME = '([^<>\\n]+?)';
const ARGS = '([\\s\\S]*?)';

/** DeepSeek V3 and R1 (and its distills): each call a `function` type, its name, and its arguments in a json code block. */
const deepseekV3 = markedFormat({
  name: 'deepseek_v3',
  sectionBegin: '<｜tool▁calls▁begin｜>',
  sectionEnd: '<｜tool▁calls▁end｜>',
  callPrefix: '<｜tool▁call▁begin｜>function<｜tool▁sep｜>',
  callRest: (name) => `${name}\n\`\`\`json\n`,
  callEnd: '\n```<｜tool▁call▁end｜>',
  call: new RegExp(`<｜tool▁call▁begin｜>function<｜tool▁sep｜>${NAME}\\n\`\`\`json\\n${ARGS}\\n\`\`\`<｜tool▁call▁end｜>`, 'g'),
  section: new RegExp(`<｜tool▁calls▁begin｜>${ARGS}<｜tool▁calls▁end｜>`, 'g'),
});

/** DeepSeek V3.1: each call its name, `<｜tool▁sep｜>`, and its arguments. */
const deepseekV31 = markedFormat({
  name: 'deepseek_v31',
  sectionBegin: '<｜tool▁calls▁begin｜>',
  sectionEnd: '<｜tool▁calls▁end｜>',
  callPrefix: '<｜tool▁call▁begin｜>',
  callRest: (name) => `${name}<｜tool▁sep｜>`,
  callEnd: '<｜tool▁call▁end｜>',
  call: new RegExp(`<｜tool▁call▁begin｜>${NAME}<｜tool▁sep｜>${ARGS}<｜tool▁call▁end｜>`, 'g'),
  section: new RegExp(`<｜tool▁calls▁begin｜>${ARGS}<｜tool▁calls▁end｜>`, 'g'),
});

/** Kimi K2: `functions.NAME:INDEX` then the arguments, in a calls section (the grammar numbers every call 0). */
const kimiK2 = markedFormat({
  name: 'kimi_k2',
  sectionBegin: '<|tool_calls_section_begin|>',
  sectionEnd: '<|tool_calls_section_end|>',
  callPrefix: '<|tool_call_begin|>functions.',
  callRest: (name) => `${name}:0<|tool_call_argument_begin|>`,
  callEnd: '<|tool_call_end|>',
  call: new RegExp(`<\\|tool_call_begin\\|>(?:functions\\.)?${NAME}:\\d+<\\|tool_call_argument_begin\\|>${ARGS}<\\|tool_call_end\\|>`, 'g'),
  section: new RegExp(`<\\|tool_calls_section_begin\\|>${ARGS}<\\|tool_calls_section_end\\|>`, 'g'),
});

/** Functionary v3.1 (Llama 3.1): `<function=NAME>{…}</function>` per call. */
const functionaryV31 = markedFormat({
  name: 'functionary_v3_1',
  callPrefix: '<function=',
  callRest: (name) => `${name}>`,
  callEnd: '</function>',
  call: new RegExp(`<function=${NAME}>${ARGS}</function>`, 'g'),
});

/** Functionary v3.2: `>>>NAME\n{…}` per call, up to the next `>>>` (`>>>all` is text, not read as a call). */
const functionaryV32 = markedFormat({
  name: 'functionary_v3_2',
  callPrefix: '>>>',
  callRest: (name) => `${name}\n`,
  callEnd: '\n',
  openEnded: true,
  call: new RegExp(`>>>${NAME}\\n${ARGS}(?=>>>|$)`, 'g'),
});

/** Granite 3.x: `<|tool_call|>` and a JSON list of `{"name", "arguments"}`. */
const granite = listedFormat({
  name: 'granite',
  marker: '<|tool_call|>',
  triggers: ['<|tool_call|>'],
  begin: '<|tool_call|>[',
  callBegin: (name) => `{"name": ${jsonString(name)}, "arguments": `,
});

/** Command R7B: `<|START_ACTION|>[{"tool_call_id", "tool_name", "parameters"}, …]<|END_ACTION|>`. */
const commandR7b = listedFormat({
  name: 'command_r7b',
  marker: '<|START_ACTION|>',
  endMarker: '<|END_ACTION|>',
  triggers: ['<|START_ACTION|>'],
  begin: '<|START_ACTION|>[',
  callBegin: (name) => `{"tool_call_id": "0", "tool_name": ${jsonString(name)}, "parameters": `,
});

export const TOOL_CALL_FORMATS: Record<ToolCallFormatName, ToolCallFormat> = {
  hermes,
  llama3_json: llama3Json,
  mistral,
  deepseek_v3: deepseekV3,
  deepseek_v31: deepseekV31,
  kimi_k2: kimiK2,
  granite,
  functionary_v3_1: functionaryV31,
  functionary_v3_2: functionaryV32,
  command_r7b: commandR7b,
};

/** `--tool-call-parser`'s values: `auto` (from the chat template) or a format by name. */
export const TOOL_CALL_PARSERS = ['auto', ...(Object.keys(TOOL_CALL_FORMATS) as ToolCallFormatName[])] as const;
export type ToolCallParserName = (typeof TOOL_CALL_PARSERS)[number];

/** The markers a chat template writes for calls, most particular first, and the format each means. */
const TEMPLATE_MARKERS: readonly [string, ToolCallFormat][] = [
  ['[TOOL_CALLS]', mistral],
  ['<｜tool▁calls▁begin｜>', deepseekV31],
  ['<|tool_calls_section_begin|>', kimiK2],
  ['<|START_ACTION|>', commandR7b],
  ['<|tool_call|>', granite],
  ['<tool_call>', hermes],
  ['<function=', functionaryV31],
  ['>>>', functionaryV32],
  ['<|python_tag|>', llama3Json],
  ['<|start_header_id|>', llama3Json],
];

/**
 * The tool-call convention of a chat template, from the markers it writes (DeepSeek's json code
 * blocks tell V3/R1 from V3.1), else Hermes `<tool_call>` blocks, which is also what the fallback
 * prompt teaches templates that render no tools.
 */
export function detectToolCallFormat(template: { source: string; supportsTools: boolean }, parser: ToolCallParserName = 'auto'): ToolCallFormat {
  if (parser !== 'auto') return TOOL_CALL_FORMATS[parser];
  const { source, supportsTools } = template;
  if (!supportsTools) return hermes;
  const format = TEMPLATE_MARKERS.find(([marker]) => source.includes(marker))?.[1] ?? hermes;
  return format === deepseekV31 && source.includes('```json') ? deepseekV3 : format;
}
