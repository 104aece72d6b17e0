import type { SequenceStream } from '../../src/engine/client/engine.js';
import { generateText, spellPrompt, type GeneratedToken, type TextChunk } from '../../src/generation/text-generation.js';
import { TokenSpeller } from '../../src/generation/token-speller.js';
import type { TokenUpdate } from '../../src/engine/protocol.js';
import { readModelFiles } from '../../src/model/files.js';
import { TextTokenizer } from '../../src/model/tokenizer.js';
import { MODEL_DIRS } from '../helpers/server.js';

const utf8 = (text: string) => [...Buffer.from(text, 'utf8')];

/** A sequence's updates as the engine would send them, the last one with a finish reason. */
function stream(ids: readonly number[], finishReason: 'stop' | 'length' = 'length'): SequenceStream {
  const updates: TokenUpdate[] = ids.map((tokenId, i) => ({ id: 0, tokenId, ...(i === ids.length - 1 && { finishReason }) }));
  return Object.assign(
    (async function* () {
      yield* updates;
    })(),
    { cancel: () => undefined },
  );
}

async function collect(generator: AsyncGenerator<TextChunk, unknown>): Promise<{ text: string; tokens: GeneratedToken[]; chunks: TextChunk[] }> {
  const chunks: TextChunk[] = [];
  for (;;) {
    const step = await generator.next();
    if (step.done) break;
    chunks.push(step.value);
  }
  return { text: chunks.map((chunk) => chunk.text).join(''), tokens: chunks.flatMap((chunk) => chunk.tokens), chunks };
}

describe.each(['tiny-llama', 'tiny-gpt2'])('tokens spelled in context with the %s tokenizer', (name) => {
  let tokenizer: TextTokenizer;
  beforeAll(() => {
    tokenizer = new TextTokenizer(readModelFiles(MODEL_DIRS[name]!));
  });

  const spellAll = (prompt: string, text: string) => {
    const speller = new TokenSpeller(tokenizer, tokenizer.encode(prompt));
    return tokenizer.encode(text, false).map((id) => ({ peeked: speller.peek(id), ...speller.push(id) }));
  };

  it("keeps every space: the pieces of \" dynd's air\" join to it", () => {
    const spelled = spellAll('Once upon a time', " dynd's air");
    expect(spelled.map((token) => token.text).join('')).toBe(" dynd's air");
    expect(spelled.at(-1)!.text).toBe(' air');
    expect(spelled.at(-1)!.bytes).toEqual(utf8(' air'));
  });

  it('gives the pieces of a split character their own bytes; the piece that finishes it carries its text', () => {
    const spelled = spellAll('Robot:', ' 🤖 done');
    expect(spelled.map((token) => token.text).join('')).toBe(' 🤖 done');
    expect(spelled.flatMap((token) => token.bytes)).toEqual(utf8(' 🤖 done'));
    const held = spelled.filter((token) => token.text === '');
    expect(held.length).toBeGreaterThan(0);
    for (const token of held) expect(token.bytes.length).toBeGreaterThan(0);
    expect(spelled.find((token) => token.text.includes('🤖'))!.bytes.length).toBeLessThan(utf8('🤖').length);
  });

  it('peek spells a token as push then does', () => {
    for (const token of spellAll('Hi', ' naïve café 🚀 ok')) expect(token.peeked).toEqual({ text: token.text, bytes: token.bytes });
  });

  it('spells a special token among the alternatives by its own text', () => {
    const eos = tokenizer.encode(tokenizer.eosToken!, false)[0]!;
    const speller = new TokenSpeller(tokenizer, tokenizer.encode('Hi'));
    expect(speller.peek(eos)).toEqual({ text: tokenizer.eosToken, bytes: utf8(tokenizer.eosToken!) });
  });

  it('spells a prompt from its start without a leading BOS, special tokens by their text', () => {
    const text = `Hello ${tokenizer.eosToken} world`;
    const ids = tokenizer.encode(text);
    const prompt = spellPrompt(tokenizer, ids);
    expect(prompt.text).toBe(text);
    expect(prompt.tokens.map((token) => token.text).join('')).toBe(text);
    expect(prompt.tokens).toHaveLength(ids[0] === tokenizer.bosTokenId ? ids.length - 1 : ids.length);
    prompt.tokens.forEach((token) => expect(text.slice(token.offset, token.offset + token.text.length)).toBe(token.text));
  });
});

describe('generateText hands out tokens with the text they spell', () => {
  let tokenizer: TextTokenizer;
  beforeAll(() => {
    tokenizer = new TextTokenizer(readModelFiles(MODEL_DIRS['tiny-llama']!));
  });
  const options = (stop: string[] = []) => ({ promptIds: tokenizer.encode('Once upon a time'), stopTokenIds: [2], stop });

  it('each chunk carries the tokens whose text is in it, with offsets into the whole text', async () => {
    const ids = tokenizer.encode(' there was 🤖 a robot', false);
    const { text, tokens, chunks } = await collect(generateText(stream(ids), tokenizer, options()));
    expect(text).toBe(' there was 🤖 a robot');
    expect(tokens.map((token) => token.id)).toEqual(ids);
    for (const chunk of chunks) expect(chunk.tokens.map((token) => token.text).join('')).toBe(chunk.text);
    for (const token of tokens) expect(text.slice(token.offset, token.offset + token.text.length)).toBe(token.text);
  });

  it('at a stop string, the tokens past it are dropped and the one across it is cut where the text ends', async () => {
    const ids = tokenizer.encode(' the cat sat. Then it ran away', false);
    const { text, tokens } = await collect(generateText(stream(ids), tokenizer, options(['t. T'])));
    expect(text).toBe(' the cat sa');
    expect(tokens.map((token) => token.text).join('')).toBe(text);
    expect(tokens.at(-1)!.bytes).toEqual(utf8(tokens.at(-1)!.text));
  });

  it('an EOS is counted but not listed; a character cut off by the end is the last token\'s text', async () => {
    const [f0, x9f] = tokenizer.encode('🤖', false).filter((id) => tokenizer.idToToken(id)?.startsWith('<0x'));
    const ids = [...tokenizer.encode(' ok', false), f0!, x9f!, 2];
    const generator = generateText(stream(ids, 'stop'), tokenizer, options());
    const { text, tokens } = await collect(generator);
    expect(tokens.map((token) => token.id)).toEqual(ids.slice(0, -1));
    expect(text.startsWith(' ok')).toBe(true);
    expect(text.slice(3)).toMatch(/^\uFFFD+$/);
    expect(tokens.map((token) => token.text).join('')).toBe(text);
  });
});
