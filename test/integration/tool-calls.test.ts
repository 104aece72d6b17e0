import { Ajv2020 } from 'ajv/dist/2020.js';
import type OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import type { RunningServer } from '../../src/server.js';
import type { ValidatingFetch } from '../helpers/openapi.js';
import { DEFAULT_MODEL, fixture, openaiClient, postJson, startTestServer } from '../helpers/server.js';

/** Tools and structured output through the official client, on a Llama-architecture model whose template renders tools (Hermes style). */

const MODEL = 'tiny-llama-tools';
const WEATHER_PARAMETERS = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['c', 'f'] } },
  required: ['city', 'unit'],
  additionalProperties: false,
};
const TIME_PARAMETERS = { type: 'object', properties: { zone: { enum: ['utc', 'local'] } }, required: ['zone'], additionalProperties: false };
const weather = { type: 'function' as const, function: { name: 'get_weather', parameters: WEATHER_PARAMETERS } };
const time = { type: 'function' as const, function: { name: 'get_time', parameters: TIME_PARAMETERS } };
// The test models' contexts are short and their vocabularies small: most tests give one tool.
const tools = [weather];
const ajv = new Ajv2020();
const validators: Record<string, ReturnType<Ajv2020['compile']>> = { get_weather: ajv.compile(WEATHER_PARAMETERS), get_time: ajv.compile(TIME_PARAMETERS) };
const messages = [{ role: 'user' as const, content: 'What is the weather in Paris?' }];

function expectValidCall(call: { id: string; type: string; function: { name: string; arguments: string } }, names = ['get_weather', 'get_time']) {
  expect(call.id).toMatch(/^call_/);
  expect(call.type).toBe('function');
  expect(names).toContain(call.function.name);
  const validate = validators[call.function.name]!;
  expect(validate(JSON.parse(call.function.arguments)) ? [] : validate.errors).toEqual([]);
}

describe('tool calls and structured output with the openai client', () => {
  let server: RunningServer;
  let client: OpenAI;
  let validation: ValidatingFetch;

  beforeAll(async () => {
    server = await startTestServer({ model: fixture(`models/${MODEL}`) });
    ({ client, validation } = openaiClient(server));
  });
  afterAll(() => server.close());
  afterEach(async () => {
    await validation.settled();
    expect(validation.violations).toEqual([]);
  });

  it('detects the Hermes convention from the template', () => {
    expect(server.model.toolCallFormat.name).toBe('hermes');
    expect(server.model.chatTemplate.supportsTools).toBe(true);
  });

  it("an earlier call's arguments reach the prompt with the client's exact numbers", async () => {
    const args = '{"id": 12345678901234567890, "ratio": 2.0, "eps": 1e-07}';
    const messages = [
      { role: 'user', content: 'Look up the record.' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: args } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'found' },
    ];
    const tokenized = await postJson(server, '/tokenize', { messages, tools: [{ type: 'function', function: { name: 'lookup' } }] });
    expect(tokenized.status).toBe(200);
    const prompt = await postJson(server, '/detokenize', { tokens: tokenized.body.tokens });
    expect(prompt.body.prompt).toContain(`"arguments": ${args}}`);
  });

  it('tool_choice "required": valid calls, content null, finish_reason "tool_calls"', async () => {
    for (const seed of [1, 2, 3]) {
      const completion = await client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 1, seed, max_tokens: 100 });
      const [choice] = completion.choices;
      expect(choice!.finish_reason).toBe('tool_calls');
      expect(choice!.message.content).toBeNull();
      expect(choice!.message.tool_calls).toHaveLength(1);
      for (const call of choice!.message.tool_calls!) expectValidCall(call as never);
    }
  });

  it('parallel calls: one or more, each valid; a call cut off by max_tokens is left out', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: 'required', temperature: 0, max_tokens: 100 });
    const [choice] = completion.choices;
    expect(['tool_calls', 'length']).toContain(choice!.finish_reason);
    expect(choice!.message.tool_calls!.length).toBeGreaterThanOrEqual(1);
    for (const call of choice!.message.tool_calls!) expectValidCall(call as never);
  });

  it('a named function: exactly one call to it, finish_reason "stop"', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, messages, tools: [weather, time], tool_choice: { type: 'function', function: { name: 'get_time' } }, temperature: 0 });
    const [choice] = completion.choices;
    expect(choice!.finish_reason).toBe('stop');
    expect(choice!.message.tool_calls).toHaveLength(1);
    expectValidCall(choice!.message.tool_calls![0] as never, ['get_time']);
  });

  it('"none" and "auto" answer in text when the model writes no call', async () => {
    for (const tool_choice of ['none', 'auto'] as const) {
      const completion = await client.chat.completions.create({ model: MODEL, messages, tools, tool_choice, temperature: 0, max_tokens: 16 });
      const [choice] = completion.choices;
      expect(choice!.message.tool_calls).toBeUndefined();
      expect(typeof choice!.message.content).toBe('string');
      expect(['stop', 'length']).toContain(choice!.finish_reason);
    }
  });

  it('renders the tools and a history of calls and results with the model template', async () => {
    const plain = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 1 });
    const withTools = await client.chat.completions.create({ model: MODEL, messages, tools, max_tokens: 1 });
    const history = await client.chat.completions.create({
      model: MODEL,
      tools,
      max_tokens: 1,
      messages: [
        ...messages,
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": 21}' },
      ],
    });
    expect(withTools.usage!.prompt_tokens).toBeGreaterThan(plain.usage!.prompt_tokens + 40);
    expect(history.usage!.prompt_tokens).toBeGreaterThan(withTools.usage!.prompt_tokens + 20);
  });

  it('runTools(): the calls run, their results go back, and the loop goes round twice', async () => {
    const calls: unknown[] = [];
    const runner = client.chat.completions.runTools(
      {
        model: MODEL,
        messages,
        tool_choice: 'required',
        parallel_tool_calls: false,
        temperature: 0,
        max_tokens: 100,
        tools: [
          {
            type: 'function',
            function: {
              name: 'get_weather',
              description: 'The weather in a city',
              parameters: WEATHER_PARAMETERS,
              parse: JSON.parse,
              function: (args: unknown) => {
                calls.push(args);
                return { temperature: 21 };
              },
            },
          },
        ],
      },
      { maxChatCompletions: 2 },
    );
    await runner.done();
    const completions = runner.allChatCompletions();
    expect(completions).toHaveLength(2);
    expect(calls).toHaveLength(2);
    for (const args of calls) expect(validators.get_weather!(args)).toBe(true);
    const sent = runner.messages;
    expect(sent.filter((message) => message.role === 'tool')).toHaveLength(2);
    expect(sent.filter((message) => message.role === 'assistant' && 'tool_calls' in message && message.tool_calls?.length)).toHaveLength(2);
  });

  it('streams calls as fragments by index that the stream helper puts back together', async () => {
    const params = { model: MODEL, messages, tools, tool_choice: 'required' as const, parallel_tool_calls: false, temperature: 0, max_tokens: 100 };
    const whole = await client.chat.completions.create(params);
    const stream = client.chat.completions.stream(params);
    const fragments: unknown[] = [];
    stream.on('chunk', (chunk) => fragments.push(...(chunk.choices[0]?.delta.tool_calls ?? [])));
    const final = await stream.finalChatCompletion();
    const [choice] = final.choices;
    expect(choice!.finish_reason).toBe('tool_calls');
    const call = choice!.message.tool_calls![0]!;
    const expected = whole.choices[0]!.message.tool_calls![0]!;
    expect(call.type === 'function' && expected.type === 'function' && call.function).toEqual(expected.type === 'function' && expected.function);
    expect(fragments[0]).toMatchObject({ index: 0, id: expect.stringMatching(/^call_/), type: 'function', function: { name: expected.type === 'function' && expected.function.name, arguments: '' } });
    expect(fragments.slice(1).every((fragment) => (fragment as { index: number; id?: string }).index === 0 && !(fragment as { id?: string }).id)).toBe(true);
  });

  it('parse() with zodResponseFormat returns a parsed object', async () => {
    const Story = z.object({ mood: z.enum(['happy', 'sad']), done: z.boolean(), tags: z.array(z.enum(['cat', 'dog'])).max(2) });
    const completion = await client.chat.completions.parse({ model: MODEL, messages, response_format: zodResponseFormat(Story, 'story'), temperature: 0, max_tokens: 100 });
    const [choice] = completion.choices;
    expect(choice!.finish_reason).toBe('stop');
    expect(Story.parse(choice!.message.parsed)).toEqual(choice!.message.parsed);
  });
});

describe('tools on a model whose template knows nothing of them', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ model: DEFAULT_MODEL });
  });
  afterAll(() => server.close());

  it('gets the tools through the fallback prompt and still makes valid calls', async () => {
    const body = { model: 'tinystories-gpt2', messages, tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 0, max_tokens: 100 };
    const reply = await postJson(server, '/v1/chat/completions', body);
    expect(reply.status).toBe(200);
    expect(reply.body.choices[0].finish_reason).toBe('tool_calls');
    expectValidCall(reply.body.choices[0].message.tool_calls[0]);
    const plain = await postJson(server, '/v1/chat/completions', { ...body, tools: undefined, tool_choice: undefined, parallel_tool_calls: undefined, max_tokens: 1 });
    expect(reply.body.usage.prompt_tokens).toBeGreaterThan(plain.body.usage.prompt_tokens + 50);
  });
});
