import OpenAI from 'openai';
import type { RunningServer } from '../../src/server.js';
import { goldens } from '../helpers/goldens.js';
import { copyModel } from '../helpers/model-copy.js';
import { MODEL_DIRS, openaiClient, startTestServer } from '../helpers/server.js';
import type { ValidatingFetch } from '../helpers/openapi.js';

const MODEL = 'tinystories-gpt2';
const golden = goldens[MODEL].prompts[0]!;

describe('the official openai client against a live server', () => {
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

  it('lists the served model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    const card = await client.models.retrieve(MODEL);
    expect(card).toMatchObject({ id: MODEL, object: 'model', owned_by: 'ortserve' });
  });

  describe('completions', () => {
    it('returns the greedy continuation with usage', async () => {
      const completion = await client.completions.create({ model: MODEL, prompt: golden.prompt, max_tokens: 24, temperature: 0 });
      expect(completion.object).toBe('text_completion');
      expect(completion.id).toMatch(/^cmpl-/);
      expect(Math.abs(completion.created - Date.now() / 1000)).toBeLessThan(60);
      expect(completion.choices).toHaveLength(1);
      expect(completion.choices[0]!.text).toBe(golden.completion_text);
      expect(completion.choices[0]!.finish_reason).toBe('length');
      expect(completion.usage).toEqual({ prompt_tokens: golden.prompt_ids.length, completion_tokens: 24, total_tokens: golden.prompt_ids.length + 24, prompt_tokens_details: { cached_tokens: 0 } });
    });

    it('streams the same text in chunks, ending with a finish reason', async () => {
      const stream = await client.completions.create({ model: MODEL, prompt: golden.prompt, max_tokens: 24, temperature: 0, stream: true });
      let text = '';
      const finishReasons: (string | null)[] = [];
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        expect(chunk.object).toBe('text_completion');
        for (const choice of chunk.choices) {
          text += choice.text;
          finishReasons.push(choice.finish_reason);
        }
      }
      expect(chunks).toBeGreaterThan(5);
      expect(text).toBe(golden.completion_text);
      expect(finishReasons.at(-1)).toBe('length');
      expect(finishReasons.slice(0, -1).every((reason) => reason === null)).toBe(true);
    });

    it('gives n different choices, each indexed, when sampling', async () => {
      const completion = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 20, n: 4, temperature: 1, seed: 7 });
      expect(completion.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
      expect(new Set(completion.choices.map((c) => c.text)).size).toBeGreaterThan(1);
      const completionTokens = completion.choices.length * 20;
      expect(completion.usage?.completion_tokens).toBeLessThanOrEqual(completionTokens);
    });

    it('streams n choices, each chunk naming its choice', async () => {
      const stream = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 12, n: 3, temperature: 0, stream: true });
      const texts = ['', '', ''];
      const finished = new Set<number>();
      for await (const chunk of stream) {
        for (const choice of chunk.choices) {
          texts[choice.index] += choice.text;
          if (choice.finish_reason) finished.add(choice.index);
        }
      }
      expect(finished).toEqual(new Set([0, 1, 2]));
      expect(texts[0]).toBe(texts[1]);
      expect(texts[0]).toBe(texts[2]);
      expect(golden.completion_text.startsWith(texts[0]!)).toBe(true);
    });

    it('reproduces a seeded sample and differs with another seed', async () => {
      const run = (seed: number) =>
        client.completions.create({ model: MODEL, prompt: 'The little dog', max_tokens: 30, temperature: 1, seed, n: 2 });
      const [first, again, other] = await Promise.all([run(1234), run(1234), run(99)]);
      expect(again.choices.map((c) => c.text)).toEqual(first.choices.map((c) => c.text));
      expect(other.choices.map((c) => c.text)).not.toEqual(first.choices.map((c) => c.text));
    });

    it('ends before a stop string, which never appears, streaming or not', async () => {
      const full = golden.completion_text;
      const stop = ' girl named';
      const expected = full.slice(0, full.indexOf(stop));
      const plain = await client.completions.create({ model: MODEL, prompt: golden.prompt, max_tokens: 24, temperature: 0, stop: [stop, 'zzz'] });
      expect(plain.choices[0]!.text).toBe(expected);
      expect(plain.choices[0]!.finish_reason).toBe('stop');

      const stream = await client.completions.create({ model: MODEL, prompt: golden.prompt, max_tokens: 24, temperature: 0, stop, stream: true });
      let streamed = '';
      let finish: string | null = null;
      for await (const chunk of stream) {
        streamed += chunk.choices[0]?.text ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      expect(streamed).toBe(expected);
      expect(finish).toBe('stop');
    });
  });

  describe('chat completions', () => {
    const messages = [
      { role: 'system' as const, content: 'You tell short stories.' },
      { role: 'user' as const, content: 'Tell me about a dog.' },
    ];

    it('answers as the assistant, with usage', async () => {
      const chat = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0 });
      expect(chat.object).toBe('chat.completion');
      expect(chat.id).toMatch(/^chatcmpl-/);
      expect(chat.choices[0]!.message.role).toBe('assistant');
      expect(chat.choices[0]!.message.content!.length).toBeGreaterThan(0);
      expect(['stop', 'length']).toContain(chat.choices[0]!.finish_reason);
      expect(chat.usage!.total_tokens).toBe(chat.usage!.prompt_tokens + chat.usage!.completion_tokens);
    });

    it('streams a role delta, content deltas and a finish chunk that match the plain answer', async () => {
      const plain = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0 });
      const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0, stream: true });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
      expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
      const last = chunks.at(-1)!.choices[0]!;
      expect(last.delta).toEqual({});
      expect(last.finish_reason).toBe(plain.choices[0]!.finish_reason);
      const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
      expect(content).toBe(plain.choices[0]!.message.content);
    });

    it('supports n, stop and seed', async () => {
      const request = { model: MODEL, messages, max_tokens: 24, temperature: 1, seed: 5, n: 3, stop: ['.'] };
      const [first, again] = await Promise.all([client.chat.completions.create(request), client.chat.completions.create(request)]);
      expect(first.choices.map((c) => c.index)).toEqual([0, 1, 2]);
      expect(again.choices.map((c) => c.message.content)).toEqual(first.choices.map((c) => c.message.content));
      for (const choice of first.choices) {
        expect(choice.message.content).not.toContain('.');
      }
    });

    it('reports a client mistake as an APIError with OpenAI fields', async () => {
      await expect(client.chat.completions.create({ model: MODEL, messages, temperature: 5 })).rejects.toMatchObject({
        status: 400,
        type: 'invalid_request_error',
        param: 'temperature',
      });
      await expect(client.chat.completions.create({ model: 'gpt-4', messages })).rejects.toMatchObject({
        status: 404,
        code: 'model_not_found',
      });
    });
  });
});

describe('the chat template of a Llama model', () => {
  let server: RunningServer;
  let client: OpenAI;
  let validation: ValidatingFetch;

  beforeAll(async () => {
    server = await startTestServer({ model: MODEL_DIRS['tiny-llama']! });
    ({ client, validation } = openaiClient(server));
  });
  afterAll(() => server.close());
  afterEach(async () => {
    await validation.settled();
    expect(validation.violations).toEqual([]);
  });

  it("renders the messages with the template, adding no BOS it did not write (as Hugging Face's apply_chat_template)", async () => {
    const chat = await client.chat.completions.create({
      model: 'tiny-llama',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 4,
      temperature: 0,
    });
    const rendered = '<|user|>\nHi</s>\n<|assistant|>\n';
    const { tokenizer } = server.model;
    // apply_chat_template(tokenize=True) is tokenizer(rendered, add_special_tokens=False).
    const asRendered = tokenizer.encode(rendered, false);
    expect(chat.usage!.prompt_tokens).toBe(asRendered.length);
    expect(asRendered).not.toContain(tokenizer.bosTokenId);
    expect(tokenizer.encode(rendered)[0]).toBe(tokenizer.bosTokenId);
  });
});

describe('a chat template that writes its own BOS', () => {
  const model = copyModel(MODEL_DIRS['tiny-llama']!, {
    'tokenizer_config.json': (config) => {
      config.chat_template = `{{ bos_token }}${String(config.chat_template)}`;
    },
  });
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({ model: model.dir, servedModelNames: ['llama-bos'] });
  });
  afterAll(async () => {
    await server.close();
    model.remove();
  });

  it('is not given a second one', async () => {
    const { client, validation } = openaiClient(server);
    const chat = await client.chat.completions.create({
      model: 'llama-bos',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 2,
      temperature: 0,
    });
    const rendered = '<s><|user|>\nHi</s>\n<|assistant|>\n';
    const { tokenizer } = server.model;
    const asRendered = tokenizer.encode(rendered, false);
    expect(asRendered.filter((id) => id === 1)).toHaveLength(1);
    expect(tokenizer.encode(rendered, true).filter((id) => id === 1)).toHaveLength(2);
    expect(chat.usage!.prompt_tokens).toBe(asRendered.length);
    await validation.settled();
    expect(validation.violations).toEqual([]);
  });
});
