import fc from 'fast-check';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RunningServer } from '../../src/server.js';
import { goldens } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, startTestServer } from '../helpers/server.js';

/**
 * response_format under the grammar: whatever the model (three of them, two with random weights),
 * the reply parses and matches its schema, and requests without one, batched with it, are
 * token-for-token what they are alone.
 */

const SCHEMA = {
  type: 'object',
  properties: {
    title: { type: 'string', maxLength: 12 },
    mood: { enum: ['happy', 'sad', 'calm'] },
    done: { type: 'boolean' },
    tags: { type: 'array', items: { enum: ['cat', 'dog', 'sun'] }, maxItems: 2 },
    owner: { anyOf: [{ type: 'null' }, { type: 'object', properties: { known: { type: 'boolean' } }, required: ['known'], additionalProperties: false }] },
  },
  required: ['title', 'mood', 'done', 'tags', 'owner'],
  additionalProperties: false,
};
const validate = new Ajv2020().compile(SCHEMA);
const jsonSchema = { type: 'json_schema', json_schema: { name: 'story', schema: SCHEMA, strict: true } };

const MODELS = ['tinystories-gpt2', 'tiny-gpt2', 'tiny-llama'] as const;

describe.each(MODELS)('response_format on %s', (name) => {
  let server: RunningServer;
  const prompts = goldens[name].prompts;

  beforeAll(async () => {
    server = await startTestServer({ model: MODEL_DIRS[name]! });
  });
  afterAll(() => server.close());

  const chat = (content: string, fields: Record<string, unknown>) =>
    postJson(server, '/v1/chat/completions', { model: name, messages: [{ role: 'user', content }], max_tokens: 160, ...fields });

  it('json_schema: every golden prompt, greedy and sampled, batched with unconstrained requests that stay as they were', async () => {
    const constrained = prompts.flatMap((golden, index) => [
      chat(golden.prompt, { response_format: jsonSchema, temperature: 0 }),
      chat(golden.prompt, { response_format: jsonSchema, temperature: 1, seed: index }),
    ]);
    const plain = prompts.map((golden) => postJson(server, '/v1/completions', { model: name, prompt: golden.prompt, max_tokens: 24, temperature: 0 }));
    const [replies, completions] = await Promise.all([Promise.all(constrained), Promise.all(plain)]);
    for (const reply of replies) {
      expect(reply.status).toBe(200);
      const choice = reply.body.choices[0];
      expect(choice.finish_reason).toBe('stop');
      const value: unknown = JSON.parse(choice.message.content);
      expect(validate(value) ? [] : validate.errors).toEqual([]);
    }
    completions.forEach((completion, index) => expect(completion.body.choices[0].text).toBe(prompts[index]!.completion_text));
  });

  it('json_object: every golden prompt, greedy and sampled, is a JSON object, or runs out of tokens inside one', async () => {
    const replies = await Promise.all(
      prompts.flatMap((golden, index) => [
        chat(golden.prompt, { response_format: { type: 'json_object' }, temperature: 0, max_tokens: 200 }),
        chat(golden.prompt, { response_format: { type: 'json_object' }, temperature: 1, seed: index, max_tokens: 200 }),
      ]),
    );
    for (const reply of replies) {
      expect(reply.status).toBe(200);
      const { message, finish_reason } = reply.body.choices[0];
      expect(message.content).toMatch(/^\{/);
      if (finish_reason === 'length') {
        // Cut off inside the object: what is there is not yet JSON.
        expect(() => JSON.parse(message.content)).toThrow();
        continue;
      }
      expect(finish_reason).toBe('stop');
      const value: unknown = JSON.parse(message.content);
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
  });

  it('says finish_reason "length" when max_tokens runs out inside the object', async () => {
    const reply = await chat(prompts[0]!.prompt, { response_format: jsonSchema, temperature: 0, max_tokens: 3 });
    expect(reply.body.choices[0].finish_reason).toBe('length');
    expect(() => JSON.parse(reply.body.choices[0].message.content)).toThrow();
  });
});

describe('broken schemas', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ model: MODEL_DIRS['tiny-llama']!, grammarCompileLimitMs: 1500 });
  });
  afterAll(() => server.close());

  /** Schemas a validator refuses, and schemas it takes that the grammar engine cannot build. */
  const broken = fc.oneof(
    fc.record({ type: fc.string().filter((type) => !['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'].includes(type)) }),
    fc.record({ type: fc.constant('object'), properties: fc.oneof(fc.integer(), fc.string(), fc.constant([1])) }),
    fc.record({ type: fc.constant('object'), required: fc.oneof(fc.string(), fc.integer()) }),
    fc.record({ type: fc.constant('string'), pattern: fc.constantFrom('((', '[z-a]', '(?<=a)b', '\\p{L}+', 'a{2,', '\\k<x>', '*', '(?P<x>a)') }),
    fc.record({ $ref: fc.string().map((name) => `#/$defs/missing${name}`) }),
    fc.record({ type: fc.constant('string'), minLength: fc.integer({ max: -1 }) }),
    fc.record({ enum: fc.oneof(fc.string(), fc.integer(), fc.constant({})) }),
    fc.record({ type: fc.constant('array'), items: fc.oneof(fc.integer(), fc.string()) }),
    fc.record({ anyOf: fc.oneof(fc.constant([]), fc.integer(), fc.string()) }),
  );
  const nested = fc.oneof(
    broken,
    broken.map((inner) => ({ type: 'object', properties: { field: inner }, required: ['field'] })),
    broken.map((inner) => ({ type: 'array', items: inner })),
    broken.map((inner) => ({ anyOf: [{ type: 'null' }, inner] })),
  );

  it('400 of them: each a 400 naming the field it came in, and the server still serves', async () => {
    const samples = fc.sample(nested, { numRuns: 400, seed: 11 });
    for (const [index, schema] of samples.entries()) {
      const asTool = index % 2 === 1;
      const body = asTool
        ? { tools: [{ type: 'function', function: { name: 'f', parameters: schema } }], tool_choice: 'required' }
        : { response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } };
      const reply = await postJson(server, '/v1/chat/completions', { model: 'tiny-llama', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, ...body });
      expect({ schema, status: reply.status }).toEqual({ schema, status: 400 });
      expect(reply.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_schema', param: asTool ? 'tools[0].function.parameters' : 'response_format.json_schema.schema' });
    }
    const after = await postJson(server, '/v1/chat/completions', { model: 'tiny-llama', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 160, response_format: jsonSchema });
    expect(after.status).toBe(200);
    expect(validate(JSON.parse(after.body.choices[0].message.content))).toBe(true);
  });
});

describe('a schema too slow to compile', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ model: MODEL_DIRS['tiny-gpt2']!, grammarCompileLimitMs: 100 });
  });
  afterAll(() => server.close());

  it('is refused once it passes the compile limit, and other requests carry on', async () => {
    // Length-bounded strings cost the most to compile over GPT-2's 50,257 tokens (about 0.3 to 1.8 s here).
    const slow = { type: 'object', properties: { a: { type: 'string', maxLength: 40 }, b: { type: 'string', minLength: 3, maxLength: 30 } }, required: ['a', 'b'] };
    const [refused, plain] = await Promise.all([
      postJson(server, '/v1/chat/completions', { model: 'tiny-gpt2', messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_schema', json_schema: { name: 'slow', schema: slow } } }),
      postJson(server, '/v1/completions', { model: 'tiny-gpt2', prompt: goldens['tiny-gpt2'].prompts[0]!.prompt, max_tokens: 24, temperature: 0 }),
    ]);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ param: 'response_format.json_schema.schema', code: 'invalid_schema' });
    expect(refused.body.error.message).toContain('did not compile within');
    expect(plain.body.choices[0].text).toBe(goldens['tiny-gpt2'].prompts[0]!.completion_text);
  });
});
