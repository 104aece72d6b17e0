import { readFileSync } from 'node:fs';
import { advanceUtf8, tokenBytes, UTF8_START } from '../../src/grammar/token-bytes.js';
import { grammarVocabulary } from '../../src/grammar/vocabulary.js';
import { GrammarProbe } from '../../src/grammar/xgrammar.js';
import { ChatTemplate } from '../../src/model/chat-template.js';
import { detectToolCallFormat, TOOL_CALL_FORMATS } from '../../src/tool-calls/formats.js';
import { parseToolCalls, ToolCallParser, type ParsedPiece } from '../../src/tool-calls/tool-call-parser.js';
import { fixture } from '../helpers/server.js';

const { hermes, llama3_json: llama3, mistral } = TOOL_CALL_FORMATS;
const names = new Set(['get_weather']);

describe('detecting the tool-call convention from a chat template', () => {
  it.each([
    ['a template without tools: the fallback prompt, Hermes', '{% for m in messages %}{{ m.content }}{% endfor %}', false, 'hermes'],
    ['Hermes / Qwen', '{% if tools %}<tools>{{ tools }}</tools>{% endif %}<tool_call>', true, 'hermes'],
    ['Llama 3.x', '<|start_header_id|>{% if tools %}{{ tools }}{% endif %}<|python_tag|>', true, 'llama3_json'],
    ['Mistral', '{% if tools %}[AVAILABLE_TOOLS]{{ tools }}{% endif %}[TOOL_CALLS]', true, 'mistral'],
  ])('%s', (_, source, supportsTools, expected) => {
    expect(detectToolCallFormat({ source, supportsTools }).name).toBe(expected);
  });
});

describe('the tool-call convention of real chat templates (test/fixtures/chat-templates)', () => {
  const fixtures = new URL('../fixtures/chat-templates/', import.meta.url);
  const templates = JSON.parse(readFileSync(new URL('templates.json', fixtures), 'utf8')) as { name: string; file: string }[];
  const expected: Record<string, string> = {
    'qwen2.5-7b-instruct': 'hermes',
    'qwen3-0.6b': 'hermes',
    'qwq-32b': 'hermes',
    'deepseek-r1-distill-qwen-32b': 'deepseek_v3',
    'deepseek-v3.1': 'deepseek_v31',
    'llama-3.1-8b-instruct': 'llama3_json',
    'llama-3.2-3b-instruct': 'llama3_json',
    'mistral-nemo-instruct-2407': 'mistral',
    'phi-3.5-mini-instruct': 'hermes',
    'gemma-2-2b-it': 'hermes',
    'granite-3.3-2b-instruct': 'granite',
    'smollm3-3b': 'hermes',
    'hermes-3-llama-3.1-8b-tool_use': 'hermes',
    'functionary-medium-v3.1': 'functionary_v3_1',
    'functionary-medium-v3.2': 'functionary_v3_2',
    'kimi-k2-instruct': 'kimi_k2',
    'command-r7b-12-2024-tool_use': 'command_r7b',
  };

  it.each(templates.filter((template) => expected[template.name]))('$name', (template) => {
    const chatTemplate = new ChatTemplate({ chat_template: readFileSync(new URL(template.file, fixtures), 'utf8') }, {});
    expect(detectToolCallFormat(chatTemplate).name).toBe(expected[template.name]);
  });

  it('--tool-call-parser names the format whatever the template writes', () => {
    expect(detectToolCallFormat({ source: '<tool_call>', supportsTools: true }, 'kimi_k2').name).toBe('kimi_k2');
  });
});

describe('reading calls out of a reply', () => {
  it.each([
    ['deepseek_v3', '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Rome"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'],
    ['deepseek_v31', '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Rome"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>'],
    ['kimi_k2', '<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|><|tool_call_begin|>functions.get_weather:1<|tool_call_argument_begin|>{"city": "Rome"}<|tool_call_end|><|tool_calls_section_end|>'],
    ['functionary_v3_1', '<function=get_weather>{"city": "Paris"}</function><function=get_weather>{"city": "Rome"}</function>'],
    ['functionary_v3_2', '>>>get_weather\n{"city": "Paris"}>>>get_weather\n{"city": "Rome"}'],
    ['granite', '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]'],
    ['command_r7b', '<|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Paris"}},\n    {"tool_call_id": "1", "tool_name": "get_weather", "parameters": {"city": "Rome"}}\n]<|END_ACTION|>'],
  ] as const)('%s: two calls as the model writes them', (name, text) => {
    const { content, calls } = parseToolCalls(TOOL_CALL_FORMATS[name], names, text);
    expect(content).toBeNull();
    expect(calls.map((call) => [call.name, JSON.parse(call.arguments)])).toEqual([
      ['get_weather', { city: 'Paris' }],
      ['get_weather', { city: 'Rome' }],
    ]);
  });

  it.each(['deepseek_v31', 'kimi_k2', 'functionary_v3_1', 'functionary_v3_2', 'granite', 'command_r7b'] as const)('%s: text around or in place of a call stays text', (name) => {
    expect(parseToolCalls(TOOL_CALL_FORMATS[name], names, 'The weather is fine.')).toEqual({ content: 'The weather is fine.', calls: [] });
  });

  it('Hermes: blocks of JSON in <tool_call> tags, arguments as the model wrote them', () => {
    const text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"arguments": {"city":  "Rome"}, "name": "get_weather"}\n</tool_call>';
    expect(parseToolCalls(hermes, names, text)).toEqual({
      content: null,
      calls: [
        { name: 'get_weather', arguments: '{"city": "Paris"}' },
        // Not in the order a grammar writes: read as JSON and written compactly.
        { name: 'get_weather', arguments: '{"city":"Rome"}' },
      ],
    });
  });

  it('Llama 3: one JSON object, or several joined by "; ", maybe after <|python_tag|>', () => {
    expect(parseToolCalls(llama3, names, '{"name": "get_weather", "parameters": {"city": "Oslo"}}').calls).toEqual([{ name: 'get_weather', arguments: '{"city":"Oslo"}' }]);
    expect(parseToolCalls(llama3, names, '<|python_tag|>{"name": "get_weather", "parameters": {"city": "A"}}; {"name": "get_weather", "parameters": {"city": "B"}}').calls).toHaveLength(2);
  });

  it('Mistral: a list after [TOOL_CALLS], or the bare list when the special token is left out of the text', () => {
    const list = '[{"name": "get_weather", "arguments": {"city": "Lyon"}}]';
    expect(parseToolCalls(mistral, names, `[TOOL_CALLS]${list}`).calls).toEqual([{ name: 'get_weather', arguments: '{"city":"Lyon"}' }]);
    expect(parseToolCalls(mistral, names, list).calls).toHaveLength(1);
  });

  it('text that is not a well-formed call, or calls an unknown function, stays text', () => {
    expect(parseToolCalls(hermes, names, 'Hello <tool_call>{"name": "get_weather"')).toEqual({ content: 'Hello <tool_call>{"name": "get_weather"', calls: [] });
    const unknown = '<tool_call>{"name": "launch", "arguments": {}}</tool_call>';
    expect(parseToolCalls(hermes, names, unknown)).toEqual({ content: unknown, calls: [] });
    expect(parseToolCalls(hermes, names, 'just text')).toEqual({ content: 'just text', calls: [] });
  });

  it('a call cut off by the token limit can be dropped instead of sent as text', () => {
    const text = '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "get_w';
    expect(parseToolCalls(hermes, names, text, true)).toEqual({ content: null, calls: [{ name: 'get_weather', arguments: '{}' }] });
  });
});

describe('ToolCallParser on a stream', () => {
  const run = (pieces: string[]) => {
    const parser = new ToolCallParser(hermes, names);
    const out: ParsedPiece[][] = pieces.map((piece) => parser.push(piece));
    out.push(parser.end());
    return out;
  };

  it('lets text through, holds back what may start a call, and sends a call when its end tag arrives', () => {
    const out = run(['Sure', ' <tool', '_call>\n{"name": "get_weather", ', '"arguments": {}}\n</tool_call>', ' done']);
    expect(out).toEqual([
      [{ content: 'Sure' }],
      [],
      [],
      [{ call: { name: 'get_weather', arguments: '{}' } }],
      [{ content: ' done' }],
      [],
    ]);
  });

  it('streams a call written under its grammar as it comes: its name, then its arguments piece by piece', () => {
    const parser = new ToolCallParser(hermes, names, true);
    const pieces = ['<tool_call>\n{"name": "get_w', 'eather", "arguments": {"city": "Pa', 'ris}", "n": {"a": [1]}', '}}\n</tool', '_call>'].map((piece) => parser.push(piece));
    pieces.push(parser.end());
    expect(pieces).toEqual([
      [],
      [{ callStart: 'get_weather' }, { callArguments: '{"city": "Pa' }],
      [{ callArguments: 'ris}", "n": {"a": [1]}' }],
      [{ callArguments: '}' }],
      [],
      [],
    ]);
  });

  it('a streamed call to an unknown function is gathered whole, and stays text', () => {
    const parser = new ToolCallParser(hermes, names, true);
    const text = '<tool_call>\n{"name": "launch", "arguments": {}}\n</tool_call>';
    expect([...parser.push(text), ...parser.end()]).toEqual([{ content: text }]);
  });

  it('whole or streamed, the arguments are the text the model wrote', () => {
    const text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}\n</tool_call>';
    const streamed = new ToolCallParser(hermes, names, true);
    const args = [...streamed.push(text), ...streamed.end()].flatMap((piece) => ('callArguments' in piece ? [piece.callArguments] : [])).join('');
    expect(args).toBe('{"city": "Oslo", "unit": "c"}');
    expect(parseToolCalls(hermes, names, text).calls).toEqual([{ name: 'get_weather', arguments: args }]);
  });

  it('lets held-back text go when it turns out not to be a call', () => {
    expect(run(['a <to', 'y> b'])).toEqual([[{ content: 'a ' }], [{ content: '<toy> b' }], []]);
  });
});

describe('tool-call grammars compile for a real vocabulary', () => {
  const tokenizerJson = JSON.parse(readFileSync(fixture('models/tiny-llama/tokenizer.json'), 'utf8')) as Record<string, unknown>;
  const probe = new GrammarProbe(grammarVocabulary(tokenizerJson, 2304));
  const functions = [{ name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }, { name: 'ping' }];

  it.each(Object.values(TOOL_CALL_FORMATS))('$name: calls, parallel or not, and calls within free text', async (format) => {
    await expect(probe.check(format.callsGrammar(functions, true))).resolves.toEqual(expect.any(Number));
    await expect(probe.check(format.callsGrammar(functions, false))).resolves.toEqual(expect.any(Number));
    const auto = format.autoGrammar(functions, true);
    if (auto) await expect(probe.check(auto)).resolves.toEqual(expect.any(Number));
  });
});

describe('the grammar vocabulary of a tokenizer.json', () => {
  it('GPT-2: byte-level, special tokens empty', () => {
    const json = JSON.parse(readFileSync(fixture('models/tiny-gpt2/tokenizer.json'), 'utf8')) as Record<string, unknown>;
    const vocabulary = grammarVocabulary(json, 50257);
    expect(vocabulary).toMatchObject({ kind: 'byte_level', prependsSpace: false });
    expect(vocabulary.tokens[50256]).toBe('');
    expect(vocabulary.tokens[464]).toBe('The');
  });

  it('Llama (SentencePiece): byte fallback, a space put before the text, <s> and </s> empty', () => {
    const json = JSON.parse(readFileSync(fixture('models/tiny-llama/tokenizer.json'), 'utf8')) as Record<string, unknown>;
    const vocabulary = grammarVocabulary(json, 2304);
    expect(vocabulary).toMatchObject({ kind: 'byte_fallback', prependsSpace: true });
    expect(vocabulary.tokens.slice(0, 4)).toEqual(['', '', '', '<0x00>']);
  });
});

describe('well-formed UTF-8 under a grammar', () => {
  const step = (bytes: number[], state = UTF8_START) => advanceUtf8(state, Uint8Array.from(bytes));

  it('takes whole and split characters of every length', () => {
    expect(step([0x61, 0xc3, 0xa9])).toEqual(UTF8_START);
    const lead = step([0xf0]);
    expect(lead).toMatchObject({ needed: 3, low: 0x90 });
    expect(step([0x9f, 0x98, 0x80], lead)).toEqual(UTF8_START);
  });

  it.each([
    ['C0 (never in UTF-8)', [0xc0]],
    ['F5 (past U+10FFFF)', [0xf5]],
    ['an overlong E0 80', [0xe0, 0x80]],
    ['a surrogate ED A0', [0xed, 0xa0]],
    ['an overlong F0 80', [0xf0, 0x80]],
    ['F4 90 (past U+10FFFF)', [0xf4, 0x90]],
    ['a lone continuation byte', [0x80]],
    ['a lead byte and then ASCII', [0xc3, 0x41]],
  ])('refuses %s', (_, bytes) => {
    expect(step(bytes)).toBeUndefined();
  });

  it('knows the bytes of byte-level and byte-fallback tokens', () => {
    const gpt2 = tokenBytes({ tokens: ['Ã©', 'Ġa', ''], kind: 'byte_level', prependsSpace: false });
    expect(gpt2).toEqual([Uint8Array.of(0xc3, 0xa9), undefined, undefined]);
    const llama = tokenBytes({ tokens: ['<0xE2>', '▁é', 'ab'], kind: 'byte_fallback', prependsSpace: true });
    expect(llama).toEqual([Uint8Array.of(0xe2), Uint8Array.of(0x20, 0xc3, 0xa9), undefined]);
  });
});
