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
});
