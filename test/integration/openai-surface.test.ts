import OpenAI from 'openai';
import type { RunningServer } from '../../src/server.js';
import { goldens } from '../helpers/goldens.js';
import { openaiClient, startTestServer } from '../helpers/server.js';
import type { ValidatingFetch } from '../helpers/openapi.js';

const MODEL = 'tinystories-gpt2';
const golden = goldens[MODEL].prompts[0]!; // "Once upon a time": 24 greedy tokens, no EOS
const repetitive = goldens[MODEL].prompts[5]!; // "Tom was sad because": greedy repeats itself

describe('the full OpenAI surface through the official client', () => {
  let server: RunningServer;
  let client: OpenAI;
  let validation: ValidatingFetch;

  beforeAll(async () => {
    server = await startTestServer();
    ({ client, validation } = openaiClient(server));
  });
  afterAll(() => server.close());
  afterEach(async () => {
    await validation.settled();
    expect(validation.violations).toEqual([]);
  });

  const greedy = { model: MODEL, temperature: 0 } as const;

  describe('logprobs', () => {
    it('are log-softmax of the logits at temperature 1, and the greedy token is the most likely', async () => {
      const completion = await client.completions.create({ ...greedy, prompt: golden.prompt, max_tokens: 3, logprobs: 5, temperature: 0.7, seed: 3 });
      const logprobs = completion.choices[0]!.logprobs!;
      const top = logprobs.top_logprobs![0]!;
      const expectedTop = golden.first_step_top5;
      const byText = (id: number) => server.model.tokenizer.decode([id], false);
      expect(Object.keys(top)).toEqual(expectedTop.map(([id]) => byText(id)));
      // Differences of log-probabilities equal differences of logits: a softmax at temperature 1.
      const [bestId, bestLogit] = expectedTop[0]!;
      for (const [id, logit] of expectedTop.slice(1)) {
        expect(top[byText(id)]! - top[byText(bestId)]!).toBeCloseTo(logit - bestLogit, 4);
      }
      const mass = Object.values(top).reduce((sum, lp) => sum + Math.exp(lp), 0);
      expect(mass).toBeLessThanOrEqual(1 + 1e-6);
      expect(mass).toBeGreaterThan(0.1);
    });

    it('of greedy tokens are the highest of their position', async () => {
      const completion = await client.completions.create({ ...greedy, prompt: golden.prompt, max_tokens: 8, logprobs: 3 });
      const { tokens, token_logprobs, top_logprobs, text_offset } = completion.choices[0]!.logprobs!;
      expect(tokens).toHaveLength(8);
      expect(tokens!.join('')).toBe(completion.choices[0]!.text);
      tokens!.forEach((token, i) => {
        const best = Math.max(...Object.values(top_logprobs![i]!));
        expect(token_logprobs![i]).toBeCloseTo(best, 6);
        expect(top_logprobs![i]![token]).toBeCloseTo(token_logprobs![i]!, 6);
        expect(token_logprobs![i]).toBeLessThanOrEqual(0);
      });
      expect(text_offset![0]).toBe(0);
      expect(text_offset![1]).toBe(tokens![0]!.length);
    });

    it('stream with each chunk for completions', async () => {
      const stream = await client.completions.create({ ...greedy, prompt: golden.prompt, max_tokens: 6, logprobs: 2, stream: true });
      const tokens: string[] = [];
      const offsets: number[] = [];
      let text = '';
      for await (const chunk of stream) {
        const choice = chunk.choices[0]!;
        text += choice.text;
        if (choice.logprobs) {
          tokens.push(...choice.logprobs.tokens!);
          offsets.push(...choice.logprobs.text_offset!);
        }
      }
      expect(tokens).toHaveLength(6);
      expect(tokens.join('')).toBe(text);
      expect(offsets[3]).toBe(tokens.slice(0, 3).join('').length);
    });

    it('come in chat shape, streaming and not', async () => {
      const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
      const chat = await client.chat.completions.create({ ...greedy, messages, max_tokens: 5, logprobs: true, top_logprobs: 3 });
      const content = chat.choices[0]!.logprobs!.content!;
      expect(content).toHaveLength(5);
      for (const entry of content) {
        expect(entry.top_logprobs).toHaveLength(3);
        expect(entry.logprob).toBeCloseTo(entry.top_logprobs[0]!.logprob, 6);
        expect(entry.bytes).toEqual([...Buffer.from(entry.token, 'utf8')]);
      }
      expect(content.map((entry) => entry.token).join('')).toBe(chat.choices[0]!.message.content);

      const stream = await client.chat.completions.create({ ...greedy, messages, max_tokens: 5, logprobs: true, stream: true });
      const streamed = [];
      for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
      expect(streamed.map((entry) => entry.token)).toEqual(content.map((entry) => entry.token));
      expect(streamed.every((entry) => entry.top_logprobs.length === 0)).toBe(true);
    });

    it('are absent unless asked for', async () => {
      const chat = await client.chat.completions.create({ ...greedy, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
      expect(chat.choices[0]!.logprobs).toBeNull();
    });
  });

  describe('penalties and logit_bias', () => {
    const distinct = (text: string) => new Set(server.model.tokenizer.encode(text)).size;

    it('a frequency penalty makes the greedy text repeat itself less, a negative one more', async () => {
      const base = await client.completions.create({ ...greedy, prompt: repetitive.prompt, max_tokens: 24 });
      const penalised = await client.completions.create({ ...greedy, prompt: repetitive.prompt, max_tokens: 24, frequency_penalty: 2 });
      const rewarded = await client.completions.create({ ...greedy, prompt: repetitive.prompt, max_tokens: 24, frequency_penalty: -2 });
      expect(base.choices[0]!.text).toBe(repetitive.completion_text);
      expect(distinct(penalised.choices[0]!.text)).toBeGreaterThan(distinct(base.choices[0]!.text));
      expect(distinct(rewarded.choices[0]!.text)).toBeLessThan(distinct(base.choices[0]!.text));
    });

    it('a presence penalty changes a repetitive greedy text', async () => {
      const penalised = await client.chat.completions.create({ ...greedy, messages: [{ role: 'user', content: repetitive.prompt }], max_tokens: 24, presence_penalty: 2 });
      const base = await client.chat.completions.create({ ...greedy, messages: [{ role: 'user', content: repetitive.prompt }], max_tokens: 24 });
      expect(penalised.choices[0]!.message.content).not.toBe(base.choices[0]!.message.content);
      expect(distinct(penalised.choices[0]!.message.content!)).toBeGreaterThan(distinct(base.choices[0]!.message.content!));
    });

    it('−100 bans a token and 100 forces it', async () => {
      const firstGreedy = golden.greedy_ids[0]!;
      const banned = await client.completions.create({ ...greedy, prompt: golden.prompt, max_tokens: 24, logit_bias: { [firstGreedy]: -100 }, logprobs: 0 });
      expect(banned.choices[0]!.logprobs!.tokens).not.toContain(server.model.tokenizer.decode([firstGreedy]));
      const forcedId = server.model.tokenizer.encode(' dog')[0]!;
      const forced = await client.completions.create({ model: MODEL, prompt: golden.prompt, max_tokens: 5, temperature: 1, seed: 1, logit_bias: { [forcedId]: 100 } });
      expect(forced.choices[0]!.text).toBe(' dog'.repeat(5));
      const chat = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, logit_bias: { [forcedId]: 100 } });
      expect(chat.choices[0]!.message.content).toBe(' dog'.repeat(3));
    });
  });

  describe('prompts, echo and best_of', () => {
    it('accepts a batch of prompts as text or token ids; choice index = prompt index × n + j', async () => {
      const prompts = goldens[MODEL].prompts.slice(0, 3);
      const asText = await client.completions.create({ ...greedy, prompt: prompts.map((p) => p.prompt), max_tokens: 24, n: 2 });
      expect(asText.choices.map((c) => c.index)).toEqual([0, 1, 2, 3, 4, 5]);
      asText.choices.forEach((choice) => expect(choice.text).toBe(prompts[Math.floor(choice.index / 2)]!.completion_text));
      expect(asText.usage!.prompt_tokens).toBe(prompts.reduce((sum, p) => sum + p.prompt_ids.length, 0));
      expect(asText.usage!.completion_tokens).toBe(6 * 24);

      const asIds = await client.completions.create({ ...greedy, prompt: prompts.map((p) => p.prompt_ids), max_tokens: 24 });
      expect(asIds.choices.map((c) => c.text)).toEqual(prompts.map((p) => p.completion_text));
      const single = await client.completions.create({ ...greedy, prompt: golden.prompt_ids, max_tokens: 24 });
      expect(single.choices[0]!.text).toBe(golden.completion_text);
    });

    it('echo prepends the prompt, and with logprobs scores the prompt tokens too', async () => {
      const plain = await client.completions.create({ ...greedy, prompt: golden.prompt, max_tokens: 4, echo: true });
      expect(plain.choices[0]!.text).toBe(golden.prompt + golden.completion_text.slice(0, plain.choices[0]!.text.length - golden.prompt.length));
      expect(plain.choices[0]!.text.startsWith(golden.prompt)).toBe(true);

      const scored = await client.completions.create({ ...greedy, prompt: golden.prompt, max_tokens: 4, echo: true, logprobs: 1 });
      const logprobs = scored.choices[0]!.logprobs!;
      expect(logprobs.tokens).toHaveLength(golden.prompt_ids.length + 4);
      expect(logprobs.token_logprobs![0]).toBeNull();
      expect(logprobs.top_logprobs![0]).toBeNull();
      for (const value of logprobs.token_logprobs!.slice(1)) expect(value).toBeLessThanOrEqual(0);
      expect(logprobs.tokens!.join('')).toBe(scored.choices[0]!.text);
      expect(logprobs.text_offset![golden.prompt_ids.length]).toBe(golden.prompt.length);

      const stream = await client.completions.create({ ...greedy, prompt: golden.prompt, max_tokens: 4, echo: true, stream: true });
      let streamed = '';
      for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
      expect(streamed).toBe(plain.choices[0]!.text);
    });

    it('best_of generates more and returns the n with the highest mean logprob', async () => {
      const completion = await client.completions.create({ model: MODEL, prompt: golden.prompt, max_tokens: 10, temperature: 1, seed: 11, best_of: 4, n: 2, logprobs: 0 });
      expect(completion.choices.map((c) => c.index)).toEqual([0, 1]);
      const mean = (values: (number | null)[]) => values.reduce<number>((sum, v) => sum + (v ?? 0), 0) / values.length;
      const [first, second] = completion.choices.map((c) => mean(c.logprobs!.token_logprobs!));
      expect(first!).toBeGreaterThanOrEqual(second!);
      const returned = completion.choices.reduce((sum, c) => sum + c.logprobs!.tokens!.length, 0);
      expect(completion.usage!.completion_tokens).toBeGreaterThan(returned);
      expect(completion.usage!.completion_tokens).toBeLessThanOrEqual(40);
      // The four candidates of this seed, generated as n = 4: best_of kept the two best of them.
      const all = await client.completions.create({ model: MODEL, prompt: golden.prompt, max_tokens: 10, temperature: 1, seed: 11, n: 4, logprobs: 0 });
      const ranked = all.choices.map((c) => ({ text: c.text, mean: mean(c.logprobs!.token_logprobs!) })).sort((a, b) => b.mean - a.mean);
      expect(completion.choices.map((c) => c.text)).toEqual(ranked.slice(0, 2).map((c) => c.text));
    });
  });

  describe('stream_options.include_usage', () => {
    it('adds a last chunk with usage and no choices, on both endpoints', async () => {
      const completions = await client.completions.create({ ...greedy, prompt: golden.prompt, max_tokens: 5, stream: true, stream_options: { include_usage: true } });
      const chunks = [];
      for await (const chunk of completions) chunks.push(chunk);
      const last = chunks.at(-1)!;
      expect(last.choices).toEqual([]);
      expect(last.usage).toEqual({ prompt_tokens: golden.prompt_ids.length, completion_tokens: 5, total_tokens: golden.prompt_ids.length + 5, prompt_tokens_details: { cached_tokens: 0 } });
      expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);

      const chat = await client.chat.completions.create({ ...greedy, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, n: 2, stream: true, stream_options: { include_usage: true } });
      const chatChunks = [];
      for await (const chunk of chat) chatChunks.push(chunk);
      expect(chatChunks.at(-1)!.choices).toEqual([]);
      expect(chatChunks.at(-1)!.usage!.completion_tokens).toBe(10);
      const finishes = chatChunks.flatMap((chunk) => chunk.choices.filter((c) => c.finish_reason).map((c) => c.index));
      expect(finishes.sort()).toEqual([0, 1]);
    });
  });

  describe('chat messages', () => {
    it('takes developer messages as system messages, text parts (joined with a line break, as vLLM joins them), and names', async () => {
      const asSystem = await client.chat.completions.create({ ...greedy, max_tokens: 6, messages: [{ role: 'system', content: 'Be kind.\nBe brief.' }, { role: 'user', content: 'Hi' }] });
      const asDeveloper = await client.chat.completions.create({
        ...greedy,
        max_tokens: 6,
        messages: [
          { role: 'developer', content: [{ type: 'text', text: 'Be kind.' }, { type: 'text', text: 'Be brief.' }] },
          { role: 'user', content: 'Hi', name: 'sam' },
        ],
        response_format: { type: 'text' },
        user: 'someone',
      });
      expect(asDeveloper.choices[0]!.message.content).toBe(asSystem.choices[0]!.message.content);
      expect(asDeveloper.usage!.prompt_tokens).toBe(asSystem.usage!.prompt_tokens);
    });

    it('sets system_fingerprint and created in seconds', async () => {
      const chat = await client.chat.completions.create({ ...greedy, max_tokens: 1, messages: [{ role: 'user', content: 'Hi' }] });
      expect(chat.system_fingerprint).toMatch(/^fp_[0-9a-f]{10}$/);
      expect(Math.abs(chat.created - Date.now() / 1000)).toBeLessThan(60);
    });
  });
});
