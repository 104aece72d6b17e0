import OpenAI from 'openai';
import type { RunningServer } from '../../src/server.js';
import { openaiClient, startTestServer } from '../helpers/server.js';
import type { ValidatingFetch } from '../helpers/openapi.js';

/**
 * Automatic prefix caching through the API: a prompt that starts like an earlier one reuses the
 * KV of its whole prefill chunks, says so in `usage.prompt_tokens_details.cached_tokens`, and gets
 * exactly what a server without the cache gives.
 */

const CHUNK = 16;
const STORY =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she saw a big red ball under a tree, and she ran to get it. ';

const conversation: OpenAI.Chat.ChatCompletionMessageParam[][] = [
  [{ role: 'user', content: `${STORY}What did Lily see?` }],
  [
    { role: 'user', content: `${STORY}What did Lily see?` },
    { role: 'assistant', content: 'She saw a big red ball.' },
    { role: 'user', content: 'What did she do then?' },
  ],
];

describe('the prefix cache', () => {
  let server: RunningServer;
  let uncached: RunningServer;
  let client: OpenAI;
  let plainClient: OpenAI;
  let validation: ValidatingFetch;

  beforeAll(async () => {
    [server, uncached] = await Promise.all([startTestServer({ prefillChunk: CHUNK }), startTestServer({ prefillChunk: CHUNK, prefixCacheTokens: 0 })]);
    ({ client, validation } = openaiClient(server));
    ({ client: plainClient } = openaiClient(uncached));
  });
  afterAll(() => Promise.all([server.close(), uncached.close()]));
  afterEach(async () => {
    await validation.settled();
    expect(validation.violations).toEqual([]);
  });

  const metric = async (name: string) => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    // A labelled counter has no sample until its model counts something.
    return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  };

  it("reuses a repeated prompt's whole chunks, and answers as a server without the cache does", async () => {
    const request = { model: server.model.id, prompt: STORY, max_tokens: 16, temperature: 0 };
    const hitsBefore = await metric('ortserve_prefix_cache_hit_tokens_total');
    const first = await client.completions.create(request);
    const second = await client.completions.create(request);
    const plain = await plainClient.completions.create(request);
    const promptTokens = first.usage!.prompt_tokens;
    expect(promptTokens).toBeGreaterThan(2 * CHUNK);
    expect(first.usage).toMatchObject({ prompt_tokens_details: { cached_tokens: 0 } });
    const cached = (second.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens;
    // Every whole chunk but one that would leave nothing to prefill.
    expect(cached).toBe(Math.floor((promptTokens - 1) / CHUNK) * CHUNK);
    expect(second.choices[0]!.text).toBe(first.choices[0]!.text);
    expect(first.choices[0]!.text).toBe(plain.choices[0]!.text);
    expect(plain.usage).toMatchObject({ prompt_tokens_details: { cached_tokens: 0 } });
    expect((await metric('ortserve_prefix_cache_hit_tokens_total')) - hitsBefore).toBe(cached);
    expect(await metric('ortserve_prefix_cache_tokens')).toBeGreaterThanOrEqual(cached);
  });

  it("reuses a chat's earlier turns in the next one, streamed or not, with the same answer as without the cache", async () => {
    const ask = (api: OpenAI, messages: OpenAI.Chat.ChatCompletionMessageParam[]) => api.chat.completions.create({ model: server.model.id, messages, max_tokens: 12, temperature: 0 });
    const turn1 = await ask(client, conversation[0]!);
    const stream = await client.chat.completions.create({ model: server.model.id, messages: conversation[1]!, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    expect(turn1.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
    // The second turn's prompt begins with the first's, up to the first's generation prompt.
    const cached = usage!.prompt_tokens_details!.cached_tokens!;
    expect(cached).toBeGreaterThanOrEqual(CHUNK);
    expect(cached % CHUNK).toBe(0);
    expect(text).toBe((await ask(plainClient, conversation[1]!)).choices[0]!.message.content);
  });

  it('shares the prefill of n choices and reports the prompt once', async () => {
    const request = { model: server.model.id, prompt: `${STORY}Then`, max_tokens: 8, temperature: 1, seed: 3, n: 3 };
    const warm = await client.completions.create(request);
    const again = await client.completions.create(request);
    const plain = await plainClient.completions.create(request);
    expect(again.usage).toMatchObject({ prompt_tokens: warm.usage!.prompt_tokens, prompt_tokens_details: { cached_tokens: Math.floor((warm.usage!.prompt_tokens - 1) / CHUNK) * CHUNK } });
    expect(again.choices.map((choice) => choice.text)).toEqual(plain.choices.map((choice) => choice.text));
  });

  it('reports cached input tokens in the Responses API too', async () => {
    const input = `${STORY}Where was the ball?`;
    await client.responses.create({ model: server.model.id, input, max_output_tokens: 4, temperature: 0 });
    const response = await client.responses.create({ model: server.model.id, input, max_output_tokens: 4, temperature: 0 });
    expect(response.usage!.input_tokens_details.cached_tokens).toBeGreaterThanOrEqual(CHUNK);
  });
});
