import fc from 'fast-check';
import type { RunningServer } from '../../src/server.js';
import { responseErrors } from '../helpers/openapi.js';
import { goldens } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, startTestServer } from '../helpers/server.js';

/** `POST /tokenize` and `POST /detokenize` in vLLM's shape, against the goldens' tokenizer cases. */

describe('tokenize and detokenize (tiny-llama: a tokenizer that adds a BOS)', () => {
  let server: RunningServer;
  const golden = goldens['tiny-llama'];

  beforeAll(async () => {
    server = await startTestServer({ model: MODEL_DIRS['tiny-llama']! });
  });
  afterAll(() => server.close());

  it('a text gives the ids Hugging Face gives, with the BOS, and the context length', async () => {
    const prompt = golden.prompts[0]!;
    const response = await postJson(server, '/tokenize', { model: server.model.id, prompt: prompt.prompt });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ count: prompt.prompt_ids.length, max_model_len: server.model.config.contextLength, tokens: prompt.prompt_ids, token_strs: null });
  });

  it('add_special_tokens: false leaves the BOS out; return_token_strs lists the vocabulary pieces', async () => {
    const { text, ids, tokens } = golden.tokenizer[0]!;
    const response = await postJson(server, '/tokenize', { prompt: text, add_special_tokens: false, return_token_strs: true });
    expect(response.body.tokens).toEqual(ids);
    expect(response.body.token_strs).toEqual(tokens);
  });

  it('messages are rendered through the chat template: the ids chat completions count as the prompt', async () => {
    const messages = [{ role: 'user', content: 'Hello there' }];
    const tokenized = await postJson(server, '/tokenize', { model: server.model.id, messages });
    const chat = await postJson(server, '/v1/chat/completions', { model: server.model.id, messages, max_tokens: 1 });
    expect(tokenized.body.count).toBe(chat.body.usage.prompt_tokens);
    const withoutPrompt = await postJson(server, '/tokenize', { messages, add_generation_prompt: false });
    expect(withoutPrompt.body.count).toBeLessThan(tokenized.body.count);
  });

  it('detokenize turns ids back into the text, special tokens kept', async () => {
    const prompt = golden.prompts[0]!;
    const response = await postJson(server, '/detokenize', { model: server.model.id, tokens: prompt.prompt_ids.slice(1) });
    expect(response.body).toEqual({ prompt: prompt.prompt });
    const withBos = await postJson(server, '/detokenize', { tokens: prompt.prompt_ids });
    expect(withBos.body.prompt).toContain(server.model.tokenizer.bosToken);
  });

  it.each([
    ['/tokenize', { prompt: 'hi', messages: [{ role: 'user', content: 'hi' }] }, 'messages'],
    ['/tokenize', {}, 'prompt'],
    ['/tokenize', { prompt: 'hi', model: 'gpt-4' }, 'model'],
    ['/detokenize', { tokens: [1, 99_999_999] }, 'tokens'],
    ['/detokenize', { tokens: 'hi' }, 'tokens'],
  ])('%s with %j is refused, naming %s', async (path, body, param) => {
    const response = await postJson(server, path, body);
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(response.body.error.param).toBe(param);
  });

  it('random and hostile bodies → a 2xx or a 4xx in the error shape, never a 5xx', async () => {
    const message = fc.record({ role: fc.constantFrom('user', 'assistant', 'system', 'tool', 'x'), content: fc.oneof(fc.string({ maxLength: 20 }), fc.anything()) }, { requiredKeys: [] });
    const body = fc.oneof(
      fc.record(
        {
          model: fc.oneof(fc.constant('tiny-llama'), fc.string(), fc.constant(null)),
          prompt: fc.oneof(fc.string({ maxLength: 40 }), fc.anything()),
          messages: fc.oneof(fc.array(message, { maxLength: 3 }), fc.anything()),
          add_special_tokens: fc.oneof(fc.boolean(), fc.anything()),
          add_generation_prompt: fc.oneof(fc.boolean(), fc.anything()),
          return_token_strs: fc.oneof(fc.boolean(), fc.anything()),
          chat_template_kwargs: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 2 }), fc.anything()),
        },
        { requiredKeys: [] },
      ),
      fc.anything(),
    );
    const path = fc.constantFrom('/tokenize', '/detokenize');
    const tokens = fc.oneof(fc.array(fc.integer({ min: -3, max: 3000 }), { maxLength: 8 }), fc.anything());
    await fc.assert(
      fc.asyncProperty(path, body, tokens, async (route, payload, ids) => {
        const sent = route === '/detokenize' && typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? { ...payload, tokens: ids } : payload;
        const response = await fetch(`${server.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sent ?? null) });
        const text = await response.text();
        expect(response.status).toBeLessThan(500);
        expect(responseErrors(route, response.status, response.headers.get('content-type') ?? '', text)).toEqual([]);
      }),
      { seed: 7, numRuns: 200 },
    );
  });
});
