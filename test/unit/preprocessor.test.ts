import { grammarVocabulary as buildGrammarVocabulary } from '../../src/grammar/vocabulary.js';
import { readModelFiles } from '../../src/model/files.js';
import { TextTokenizer } from '../../src/model/tokenizer.js';
import { Preprocessor } from '../../src/preprocess/preprocessor.js';
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
});
