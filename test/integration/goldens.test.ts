import { goldens, GOLDEN_MODELS } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, startTestServer } from '../helpers/server.js';
import type { RunningServer } from '../../src/server.js';
import { TextTokenizer } from '../../src/model/tokenizer.js';
import { readModelFiles } from '../../src/model/files.js';

describe.each(GOLDEN_MODELS)('%s matches Hugging Face transformers', (name) => {
  const golden = goldens[name];
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({ model: MODEL_DIRS[name]! });
  });
  afterAll(() => server.close());

  it.each(golden.prompts.map((p) => [p.prompt, p] as const))('greedy completion of %j through HTTP', async (_, prompt) => {
    const { status, body } = await postJson(server, '/v1/completions', {
      model: name,
      prompt: prompt.prompt,
      max_tokens: 24,
      temperature: 0,
    });
    expect(status).toBe(200);
    expect(body.choices[0].text).toBe(prompt.completion_text);
    expect(body.usage.prompt_tokens).toBe(prompt.prompt_ids.length);
    const eos = prompt.stops_at_eos;
    expect(body.choices[0].finish_reason).toBe(eos ? 'stop' : 'length');
    if (eos) expect(body.usage.completion_tokens).toBeLessThan(24);
    else expect(body.usage.completion_tokens).toBe(24);
  });

  it('streams every golden completion as deltas that add up to the same text', async () => {
    for (const prompt of golden.prompts) {
      const response = await fetch(`${server.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: name, prompt: prompt.prompt, max_tokens: 24, temperature: 0, stream: true }),
      });
      const events = (await response.text()).split('\n\n').filter(Boolean);
      expect(events.at(-1)).toBe('data: [DONE]');
      const chunks = events.slice(0, -1).map((event) => JSON.parse(event.replace(/^data: /, '')) as { choices: { text: string }[] });
      expect(chunks.map((chunk) => chunk.choices[0]!.text).join('')).toBe(prompt.completion_text);
    }
  });

  it('tokenizes every prompt and tokenizer case as Hugging Face does', () => {
    const tokenizer = new TextTokenizer(readModelFiles(MODEL_DIRS[name]!));
    for (const prompt of golden.prompts) expect(tokenizer.encode(prompt.prompt)).toEqual(prompt.prompt_ids);
    for (const testCase of golden.tokenizer) {
      expect(tokenizer.encode(testCase.text, false)).toEqual(testCase.ids);
      expect(testCase.ids.map((id) => tokenizer.idToToken(id))).toEqual(testCase.tokens);
      expect(tokenizer.decode(testCase.ids, false)).toBe(testCase.decoded);
    }
  });
});
