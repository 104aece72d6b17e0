import OpenAI from 'openai';
import type { RunningServer } from '../../src/server.js';
import { GOLDEN_MODELS, goldens } from '../helpers/goldens.js';
import { MODEL_DIRS, openaiClient, postJson, startTestServer } from '../helpers/server.js';
import type { ValidatingFetch } from '../helpers/openapi.js';

type Logprobs = OpenAI.Completions.CompletionChoice.Logprobs;

const REPLACEMENT = '\uFFFD';

/** Every token's text where its offset says, and all of them together the whole text. */
function expectTokensSpellText(logprobs: Logprobs, text: string): void {
  const tokens = logprobs.tokens!;
  expect(tokens.join('')).toBe(text);
  tokens.forEach((token, i) => expect(text.slice(logprobs.text_offset![i], logprobs.text_offset![i]! + token.length)).toBe(token));
}

/** The sampled token is among the alternatives under its own text, with its own log-probability, and there are at most `logprobs` + 1. */
function expectSampledAmongTop(logprobs: Logprobs, count: number): void {
  logprobs.tokens!.forEach((token, i) => {
    const top = logprobs.top_logprobs![i];
    if (logprobs.token_logprobs![i] === null) return;
    expect(top![token]).toBeCloseTo(logprobs.token_logprobs![i]!, 5);
    expect(Object.keys(top!).length).toBeLessThanOrEqual(count + 1);
  });
}

describe.each(GOLDEN_MODELS)('logprobs spell the text exactly with %s', (name) => {
  let server: RunningServer;
  let client: OpenAI;
  let validation: ValidatingFetch;
  const golden = goldens[name].prompts[0]!;
  /** Byte pieces pushed up, so that sampled text has characters split across tokens (tiny-llama's byte fallback, GPT-2's byte-level pieces). */
  let splitCharacters: Record<string, number>;

  beforeAll(async () => {
    server = await startTestServer({ model: MODEL_DIRS[name]! });
    ({ client, validation } = openaiClient(server));
    const { tokenizer } = server.model;
    const unfinished = (id: number) => {
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(tokenizer.tokenBytes(id));
        return false;
      } catch {
        return true;
      }
    };
    const pieces = tokenizer.encode(' 🤖 🚀 ï', false).filter(unfinished);
    expect(pieces.length).toBeGreaterThan(1);
    splitCharacters = Object.fromEntries(pieces.map((id) => [String(id), 25]));
  });
  afterAll(() => server.close());
  afterEach(async () => {
    await validation.settled();
    expect(validation.violations).toEqual([]);
  });

  const sampled = () => ({ model: server.model.id, prompt: golden.prompt, max_tokens: 40, temperature: 1, seed: 11, n: 3, logprobs: 3, logit_bias: splitCharacters });

  it('non-streamed, with echo: tokens join to the text and offsets index it; no BOS; the sampled token is in its top', async () => {
    const completion = await client.completions.create({ ...sampled(), echo: true });
    for (const choice of completion.choices) {
      expect(choice.text.startsWith(golden.prompt)).toBe(true);
      expectTokensSpellText(choice.logprobs!, choice.text);
      expectSampledAmongTop(choice.logprobs!, 3);
      expect(choice.logprobs!.tokens![0]).not.toBe(server.model.tokenizer.bosToken);
    }
    // Characters split across tokens were sampled: the test saw held bytes.
    const all = completion.choices.flatMap((choice) => choice.logprobs!.tokens!);
    expect(all.filter((token) => token === '').length).toBeGreaterThan(0);
  });

  it('streamed: the same tokens, offsets and log-probabilities as not streamed', async () => {
    const whole = await client.completions.create({ ...sampled(), echo: true });
    const stream = await client.completions.create({ ...sampled(), echo: true, stream: true });
    const streamed = whole.choices.map(() => ({ text: '', tokens: [] as string[], offsets: [] as number[], logprobs: [] as (number | null)[] }));
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        const target = streamed[choice.index]!;
        target.text += choice.text;
        if (!choice.logprobs) continue;
        target.tokens.push(...choice.logprobs.tokens!);
        target.offsets.push(...choice.logprobs.text_offset!);
        target.logprobs.push(...choice.logprobs.token_logprobs!);
      }
    }
    whole.choices.forEach((choice, index) => {
      const target = streamed[index]!;
      expect(target.text).toBe(choice.text);
      expect(target.tokens).toEqual(choice.logprobs!.tokens);
      expect(target.offsets).toEqual(choice.logprobs!.text_offset);
      target.logprobs.forEach((logprob, i) => {
        if (logprob === null) expect(choice.logprobs!.token_logprobs![i]).toBeNull();
        else expect(logprob).toBeCloseTo(choice.logprobs!.token_logprobs![i]!, 5);
      });
    });
  });

  it('chat: tokens join to the content, spaces included, and their bytes are the content\'s UTF-8', async () => {
    const chat = await client.chat.completions.create({
      model: server.model.id,
      messages: [{ role: 'user', content: golden.prompt }],
      max_tokens: 40,
      temperature: 1,
      seed: 5,
      n: 3,
      logprobs: true,
      top_logprobs: 2,
    });
    for (const choice of chat.choices) {
      const content = choice.logprobs!.content!;
      const text = choice.message.content ?? '';
      expect(content.map((entry) => entry.token).join('')).toBe(text);
      const bytes = Buffer.from(content.flatMap((entry) => entry.bytes ?? []));
      if (!text.includes(REPLACEMENT)) expect(bytes.toString('utf8')).toBe(text);
      for (const entry of content) {
        if (entry.token !== '' && !entry.token.includes(REPLACEMENT) && !entry.bytes!.some((byte) => byte >= 0x80 && byte < 0xc0)) {
          expect(entry.bytes).toEqual([...Buffer.from(entry.token, 'utf8')]);
        }
        expect(entry.top_logprobs).toHaveLength(2);
      }
    }
  });

  it('logprobs: 0 gives each token alone with its log-probability', async () => {
    const completion = await client.completions.create({ model: server.model.id, prompt: golden.prompt, max_tokens: 6, temperature: 0, logprobs: 0 });
    const logprobs = completion.choices[0]!.logprobs!;
    logprobs.tokens!.forEach((token, i) => expect(logprobs.top_logprobs![i]).toEqual({ [token]: logprobs.token_logprobs![i] }));
  });

  it('echo with max_tokens 0 scores the prompt and generates nothing; the scores are the model\'s', async () => {
    // The prompt and the golden's first greedy token: the last position's alternatives are the golden's first step.
    const ids = [...golden.prompt_ids, golden.greedy_ids[0]!];
    const completion = await client.completions.create({ model: server.model.id, prompt: ids, max_tokens: 0, echo: true, logprobs: 5 });
    const choice = completion.choices[0]!;
    const spelled = server.model.tokenizer.decode(ids);
    expect(choice.text).toBe(spelled);
    expect(choice.finish_reason).toBe('length');
    expect(completion.usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: 0 });
    expectTokensSpellText(choice.logprobs!, choice.text);
    const tokens = choice.logprobs!.tokens!;
    expect(tokens.at(-1)).toBe(spelled.slice(server.model.tokenizer.decode(golden.prompt_ids).length));
    // Up to six alternatives: the five most likely, the sampled (the most likely here) among them.
    const last = Object.values(choice.logprobs!.top_logprobs!.at(-1)!).sort((a, b) => b - a);
    expect(last[0]).toBeCloseTo(choice.logprobs!.token_logprobs!.at(-1)!, 6);
    const [best, ...rest] = golden.first_step_top5;
    rest.forEach(([, logit], i) => expect(last[i + 1]! - last[0]!).toBeCloseTo(logit - best![1], 3));
  });

  it('max_tokens 0 without echo is a 400 naming the field', async () => {
    const response = await postJson(server, '/v1/completions', { model: server.model.id, prompt: golden.prompt, max_tokens: 0 });
    expect(response.status).toBe(400);
    expect(response.body.error).toMatchObject({ param: 'max_tokens', code: 'invalid_value', type: 'invalid_request_error' });
  });
});
