import { IncrementalDetokenizer } from '../../src/generation/detokenizer.js';
import { readModelFiles } from '../../src/model/files.js';
import { TextTokenizer } from '../../src/model/tokenizer.js';
import { MODEL_DIRS } from '../helpers/server.js';

const REPLACEMENT = '\uFFFD';

const TEXTS = [
  ' The quick brown fox jumps over the lazy dog.',
  ' there was 🤖🚀 a robot',
  ' 中文测试：你好，世界！',
  ' naïve café',
  ' Привет, мир! Как дела?',
];

const PROMPTS = ['Hi', 'Once upon a time there was a little girl named Lily'];

interface Run {
  deltas: string[];
  flushed: string;
  /** decode(prompt + generated) minus decode(prompt). */
  expected: string;
}

function detokenize(tokenizer: TextTokenizer, promptIds: number[], generated: number[]): Run {
  const detokenizer = new IncrementalDetokenizer(tokenizer, promptIds);
  const deltas = generated.map((id) => detokenizer.push(id));
  const flushed = detokenizer.flush();
  const promptText = tokenizer.decode(promptIds);
  const fullText = tokenizer.decode([...promptIds, ...generated]);
  expect(fullText.startsWith(promptText)).toBe(true);
  return { deltas, flushed, expected: fullText.slice(promptText.length) };
}

describe.each(['tiny-gpt2', 'tiny-llama'])('IncrementalDetokenizer with the %s tokenizer', (name) => {
  let tokenizer: TextTokenizer;

  beforeAll(() => {
    tokenizer = new TextTokenizer(readModelFiles(MODEL_DIRS[name]!));
  });

  describe.each(PROMPTS)('after the prompt %j', (prompt) => {
    it.each(TEXTS)('turns the tokens of %j into deltas that add up to the decoded text, with no broken character', (text) => {
      const promptIds = tokenizer.encode(prompt);
      const generated = tokenizer.encode(text, false);
      const { deltas, flushed, expected } = detokenize(tokenizer, promptIds, generated);
      expect(expected).toBe(text);
      for (const delta of deltas) expect(delta).not.toContain(REPLACEMENT);
      expect(deltas.join('') + flushed).toBe(expected);
      expect(flushed).toBe('');
    });

    it.each(TEXTS)('emits the text of %j as soon as each character is complete', (text) => {
      const promptIds = tokenizer.encode(prompt);
      const generated = tokenizer.encode(text, false);
      const promptText = tokenizer.decode(promptIds);
      const detokenizer = new IncrementalDetokenizer(tokenizer, promptIds);
      let emitted = '';
      generated.forEach((id, i) => {
        emitted += detokenizer.push(id);
        const soFar = tokenizer.decode([...promptIds, ...generated.slice(0, i + 1)]).slice(promptText.length);
        if (!soFar.endsWith(REPLACEMENT)) expect(emitted).toBe(soFar);
        else expect(soFar.startsWith(emitted)).toBe(true);
      });
    });
  });

  it('keeps the leading space of the first generated word', () => {
    const promptIds = tokenizer.encode('Once upon a time');
    const generated = tokenizer.encode(' there was a dog', false);
    const { deltas } = detokenize(tokenizer, promptIds, generated);
    expect(deltas[0]).toBe(' there');
    expect(deltas.join('')).toBe(' there was a dog');
  });

  it('uses only the end of a long prompt as context and still gets every delta right', () => {
    const promptIds = tokenizer.encode('word '.repeat(40) + 'and then');
    expect(promptIds.length).toBeGreaterThan(20);
    const generated = tokenizer.encode(' café 🤖 done', false);
    const { deltas, flushed, expected } = detokenize(tokenizer, promptIds, generated);
    expect(deltas.join('') + flushed).toBe(expected);
    expect(expected).toBe(' café 🤖 done');
  });

  it('returns nothing from flush() a second time', () => {
    const detokenizer = new IncrementalDetokenizer(tokenizer, tokenizer.encode('Hi'));
    for (const id of tokenizer.encode(' there', false)) detokenizer.push(id);
    detokenizer.flush();
    expect(detokenizer.flush()).toBe('');
  });
});

describe('IncrementalDetokenizer on invalid UTF-8 (tiny-llama byte fallback)', () => {
  let tokenizer: TextTokenizer;
  const byteToken = (hex: string): number => {
    for (let id = 0; id < 1000; id++) if (tokenizer.idToToken(id) === `<0x${hex}>`) return id;
    throw new Error(`no byte token <0x${hex}>`);
  };

  beforeAll(() => {
    tokenizer = new TextTokenizer(readModelFiles(MODEL_DIRS['tiny-llama']!));
  });

  it('holds back a lone continuation byte in push() and releases it as U+FFFD in flush()', () => {
    const detokenizer = new IncrementalDetokenizer(tokenizer, tokenizer.encode('Once upon a time'));
    expect(detokenizer.push(byteToken('80'))).toBe('');
    expect(detokenizer.flush()).toBe(REPLACEMENT);
  });

  it('releases a broken byte together with the next token that decodes cleanly', () => {
    const promptIds = tokenizer.encode('Once upon a time');
    const detokenizer = new IncrementalDetokenizer(tokenizer, promptIds);
    const [space] = tokenizer.encode(' a', false).slice(-1);
    expect(detokenizer.push(byteToken('80'))).toBe('');
    const released = detokenizer.push(space!);
    expect(released).toBe(tokenizer.decode([...promptIds, byteToken('80'), space!]).slice(tokenizer.decode(promptIds).length));
    expect(released.startsWith(REPLACEMENT)).toBe(true);
    expect(released.endsWith('a')).toBe(true);
    expect(detokenizer.flush()).toBe('');
  });

  it('holds back the start of a character cut off by the end of generation until flush()', () => {
    // The first two bytes of 🤖 (F0 9F A4 96).
    const detokenizer = new IncrementalDetokenizer(tokenizer, tokenizer.encode('Robot:'));
    expect(detokenizer.push(byteToken('F0'))).toBe('');
    expect(detokenizer.push(byteToken('9F'))).toBe('');
    const rest = detokenizer.flush();
    expect(rest.length).toBeGreaterThan(0);
    expect([...rest].every((c) => c === REPLACEMENT)).toBe(true);
  });
});
