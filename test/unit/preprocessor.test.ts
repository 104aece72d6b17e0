import { grammarVocabulary as buildGrammarVocabulary } from '../../src/grammar/vocabulary.js';
import { readModelFiles } from '../../src/model/files.js';
import { TextTokenizer } from '../../src/model/tokenizer.js';
import { PreprocessInputError, Preprocessor } from '../../src/preprocess/preprocessor.js';
import { DEFAULT_MODEL } from '../helpers/server.js';

describe('Preprocessor', () => {
  const files = readModelFiles(DEFAULT_MODEL);
  const tokenizer = new TextTokenizer(files);
  let preprocessor: Preprocessor;

  beforeAll(async () => {
    const grammarVocabulary = buildGrammarVocabulary(files.tokenizerJson, 4096);
    preprocessor = await Preprocessor.start({ tokenizerJson: files.tokenizerJson, tokenizerConfig: files.tokenizerConfig, grammarVocabulary });
  });
  afterAll(() => preprocessor.close());

  it('gives the token ids the tokenizer gives, in the order of the texts', async () => {
    const texts = ['Once upon a time', ' there was a dog', 'café 🤖'];
    expect(await preprocessor.encode(texts, true)).toEqual(texts.map((text) => tokenizer.encode(text)));
    expect(await preprocessor.encode(texts, false)).toEqual(texts.map((text) => tokenizer.encode(text, false)));
  });

  it('takes requests a prompt at a time: a short request finishes before a long one that came first', async () => {
    const order: string[] = [];
    const long = preprocessor.encode(Array.from({ length: 32 }, () => 'The little dog ran to the park. '.repeat(400)), true).then(() => order.push('long'));
    const short = preprocessor.encode(['Hi'], true).then(() => order.push('short'));
    await Promise.all([long, short]);
    expect(order).toEqual(['short', 'long']);
  });

  it('stops tokenizing a request once its check throws', async () => {
    const seen: number[] = [];
    const texts = Array.from({ length: 8 }, (_, index) => `prompt ${index}`);
    const failed = preprocessor.encode(texts, true, (_ids, index) => {
      seen.push(index);
      if (index === 2) throw new Error('too long');
    });
    await expect(failed).rejects.toThrow('too long');
    await preprocessor.encode(['flush'], true);
    expect(seen).toEqual([0, 1, 2]);
  });

  it('renders a conversation and leaves out what cannot fit the context', async () => {
    const chat = await preprocessor.chat([{ role: 'user', content: 'Hi' }], 512);
    expect(chat).toEqual({ ids: tokenizer.encode('user: Hi\nassistant:') });
    const tooLong = await preprocessor.chat([{ role: 'user', content: 'word '.repeat(100_000) }], 512);
    expect(tooLong).toEqual({ tooLong: { atLeastTokens: expect.any(Number), characters: expect.any(Number) } });
  });

  it('takes turns between clients: a client behind another client\'s many requests waits for one task, not all of them', async () => {
    const order: string[] = [];
    const flood = Array.from({ length: 12 }, (_, i) =>
      preprocessor.encode(['The little dog ran to the park. '.repeat(300) + i], true, undefined, { client: 'flood' }).then(() => order.push(`flood${i}`)),
    );
    const other = preprocessor.encode(['Hi'], true, undefined, { client: 'other' }).then(() => order.push('other'));
    await Promise.all([...flood, other]);
    expect(order.indexOf('other')).toBeLessThanOrEqual(1);
  });

  it('drops the waiting tasks of a request whose signal aborts, rejecting with its reason', async () => {
    const controller = new AbortController();
    const reason = new Error('the client left');
    let checked = 0;
    const long = Array.from({ length: 16 }, () => 'The little dog ran to the park. '.repeat(300));
    const abandoned = preprocessor.encode(long, true, () => void checked++, { client: 'gone', signal: controller.signal });
    controller.abort(reason);
    await expect(abandoned).rejects.toBe(reason);
    await preprocessor.encode(['flush'], true);
    // At most the task already in the worker ran.
    expect(checked).toBeLessThanOrEqual(1);
    const already = new AbortController();
    already.abort(reason);
    await expect(preprocessor.chat([{ role: 'user', content: 'Hi' }], 512, undefined, undefined, { client: 'gone', signal: already.signal })).rejects.toBe(reason);
  });

  it('fails a request that cannot be handed to the worker by itself, and carries on', async () => {
    const deep = JSON.parse('['.repeat(200_000) + ']'.repeat(200_000)) as unknown;
    const message = { role: 'assistant' as const, content: '', metadata: deep };
    await expect(preprocessor.chat([{ role: 'user', content: 'Hi' }, message], 512)).rejects.toThrow(PreprocessInputError);
    expect(await preprocessor.encode(['Once upon a time'], true)).toEqual([tokenizer.encode('Once upon a time')]);
  });
});
