import Anthropic from '@anthropic-ai/sdk';
import type { RunningServer } from '../../src/server.js';
import { validatingFetch, type ValidatingFetch } from '../helpers/openapi.js';
import { fixture, postJson, startTestServer } from '../helpers/server.js';

/**
 * Anthropic's Messages API through the official `@anthropic-ai/sdk`: the same generation as chat
 * completions, in Anthropic's shapes; every response is checked against openapi.yaml.
 */

type Client = { client: Anthropic; validation: ValidatingFetch };

function anthropicClient(server: RunningServer, apiKey = 'unused'): Client {
  const validation = validatingFetch();
  return { client: new Anthropic({ baseURL: server.url, apiKey, maxRetries: 0, fetch: validation.fetch }), validation };
}

const textOf = (message: Anthropic.Message) => message.content.flatMap((block) => (block.type === 'text' ? [block.text] : [])).join('');
const question: Anthropic.MessageParam[] = [{ role: 'user', content: 'Once upon a time' }];

describe('the Messages API on the default model', () => {
  let server: RunningServer;
  let client: Anthropic;
  let validation: ValidatingFetch;
  beforeAll(async () => {
    server = await startTestServer();
    ({ client, validation } = anthropicClient(server));
  });
  afterAll(() => server.close());
  afterEach(async () => {
    await validation.settled();
    expect(validation.violations).toEqual([]);
  });

  it('answers as chat completions answers the same conversation: one text block, max_tokens as the stop reason, usage', async () => {
    const message = await client.messages.create({ model: server.model.id, max_tokens: 12, messages: question, temperature: 0 } as Anthropic.MessageCreateParamsNonStreaming);
    const chat = await postJson(server, '/v1/chat/completions', { model: server.model.id, max_tokens: 12, messages: question, temperature: 0 });
    expect(message.id).toMatch(/^msg_/);
    expect(message.content).toEqual([{ type: 'text', text: chat.body.choices[0].message.content, citations: null }]);
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.usage).toMatchObject({ input_tokens: chat.body.usage.prompt_tokens, output_tokens: 12 });
  });

  it('streams the same text in named events, from message_start to message_stop', async () => {
    const params = { model: server.model.id, max_tokens: 12, messages: question, temperature: 0 } as Anthropic.MessageCreateParamsNonStreaming;
    const whole = await client.messages.create(params);
    const stream = client.messages.stream(params);
    const types: string[] = [];
    stream.on('streamEvent', (event) => types.push(event.type));
    const final = await stream.finalMessage();
    expect(textOf(final)).toBe(textOf(whole));
    expect(final.stop_reason).toBe('max_tokens');
    expect(final.usage.output_tokens).toBe(12);
    expect(types[0]).toBe('message_start');
    expect(types.slice(-2)).toEqual(['message_delta', 'message_stop']);
    expect(types).toContain('content_block_start');
    expect(types).toContain('content_block_stop');
  });

  it('a stop sequence ends the text before it, and is named as the reason', async () => {
    const params = { model: server.model.id, max_tokens: 16, messages: question, temperature: 0 } as Anthropic.MessageCreateParamsNonStreaming;
    const text = textOf(await client.messages.create(params));
    const stop = text.trim().split(' ')[2]!;
    const message = await client.messages.create({ ...params, stop_sequences: [stop] });
    expect(message.stop_reason).toBe('stop_sequence');
    expect(message.stop_sequence).toBe(stop);
    expect(textOf(message)).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('top_k 1 samples the most likely token, whatever the temperature', async () => {
    const greedy = await client.messages.create({ model: server.model.id, max_tokens: 12, messages: question, temperature: 0 } as Anthropic.MessageCreateParamsNonStreaming);
    const topK = await client.messages.create({ model: server.model.id, max_tokens: 12, messages: question, temperature: 1, top_k: 1 } as Anthropic.MessageCreateParamsNonStreaming);
    expect(textOf(topK)).toBe(textOf(greedy));
  });

  it('count_tokens counts the prompt as /v1/messages renders it, the system prompt included', async () => {
    const plain = await client.messages.countTokens({ model: server.model.id, messages: question });
    const withSystem = await client.messages.countTokens({ model: server.model.id, messages: question, system: 'You tell stories.' });
    const message = await client.messages.create({ model: server.model.id, max_tokens: 1, messages: question } as Anthropic.MessageCreateParamsNonStreaming);
    expect(plain.input_tokens).toBe(message.usage.input_tokens);
    expect(withSystem.input_tokens).toBeGreaterThan(plain.input_tokens);
  });

  it("errors come in Anthropic's shape and as the SDK's error classes", async () => {
    const unknown = client.messages.create({ model: 'no-such-model', max_tokens: 4, messages: question });
    await expect(unknown).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    await expect(unknown).rejects.toMatchObject({ status: 404, error: { type: 'error', error: { type: 'not_found_error' } } });
    const noMaxTokens = client.messages.create({ model: server.model.id, messages: question } as unknown as Anthropic.MessageCreateParamsNonStreaming);
    await expect(noMaxTokens).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    await expect(noMaxTokens).rejects.toMatchObject({ error: { error: { type: 'invalid_request_error', message: "Missing required parameter: 'max_tokens'." } } });
    const image = client.messages.create({
      model: server.model.id,
      max_tokens: 4,
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }],
    });
    await expect(image).rejects.toMatchObject({ status: 400, error: { error: { message: expect.stringContaining("'image'") } } });
  });

  it('a body that is not JSON is a 400 in the same shape', async () => {
    const response = await fetch(`${server.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('JSON') } });
  });
});

describe('the Messages API with API keys', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ apiKeys: ['sk-ant-local'] });
  });
  afterAll(() => server.close());

  it('takes the key from x-api-key, as the SDK sends it; a wrong key is an authentication_error', async () => {
    const { client } = anthropicClient(server, 'sk-ant-local');
    const message = await client.messages.create({ model: server.model.id, max_tokens: 2, messages: question });
    expect(message.type).toBe('message');
    const wrong = anthropicClient(server, 'sk-wrong').client.messages.create({ model: server.model.id, max_tokens: 2, messages: question });
    await expect(wrong).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
    await expect(wrong).rejects.toMatchObject({ status: 401, error: { type: 'error', error: { type: 'authentication_error' } } });
  });
});

describe('tools through the Messages API (a model whose template renders Hermes calls)', () => {
  let server: RunningServer;
  let client: Anthropic;
  let validation: ValidatingFetch;
  const tools: Anthropic.Tool[] = [
    { name: 'get_weather', description: 'The weather in a city.', input_schema: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Oslo'] } }, required: ['city'] } },
  ];
  const ask: Anthropic.MessageParam = { role: 'user', content: 'Weather in Paris?' };
  beforeAll(async () => {
    server = await startTestServer({ model: fixture('models/tiny-llama-tools') });
    ({ client, validation } = anthropicClient(server));
  });
  afterAll(() => server.close());
  afterEach(async () => {
    await validation.settled();
    expect(validation.violations).toEqual([]);
  });

  it('tool_choice any makes a call: a tool_use block whose input follows the schema, stop_reason tool_use; the result goes back in a second round', async () => {
    const first = await client.messages.create({ model: server.model.id, max_tokens: 200, temperature: 0, tools, tool_choice: { type: 'any', disable_parallel_tool_use: true }, messages: [ask] } as Anthropic.MessageCreateParamsNonStreaming);
    expect(first.stop_reason).toBe('tool_use');
    const call = first.content.find((block): block is Anthropic.ToolUseBlock => block.type === 'tool_use')!;
    expect(call).toMatchObject({ type: 'tool_use', id: expect.stringMatching(/^toolu_/), name: 'get_weather', input: { city: expect.stringMatching(/^(Paris|Oslo)$/) } });

    const history: Anthropic.MessageParam[] = [
      ask,
      { role: 'assistant', content: first.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'Sunny, 22 degrees.' }] },
    ];
    const before = await client.messages.countTokens({ model: server.model.id, tools, messages: [ask] });
    const after = await client.messages.countTokens({ model: server.model.id, tools, messages: history });
    expect(after.input_tokens).toBeGreaterThan(before.input_tokens);
    const second = await client.messages.create({ model: server.model.id, max_tokens: 8, tools, tool_choice: { type: 'none' }, messages: history });
    expect(second.stop_reason).toBe('max_tokens');
    expect(second.content.every((block) => block.type === 'text')).toBe(true);
  });

  it('a named tool, streamed: the call comes as input_json_delta pieces that add up to its input', async () => {
    const params = { model: server.model.id, max_tokens: 200, temperature: 0, tools, tool_choice: { type: 'tool' as const, name: 'get_weather' }, messages: [ask] } as Anthropic.MessageCreateParamsNonStreaming;
    const whole = await client.messages.create(params);
    const stream = client.messages.stream(params);
    let partial = '';
    stream.on('inputJson', (delta) => void (partial += delta));
    const final = await stream.finalMessage();
    const wholeCall = whole.content.find((block) => block.type === 'tool_use') as Anthropic.ToolUseBlock;
    const streamedCall = final.content.find((block) => block.type === 'tool_use') as Anthropic.ToolUseBlock;
    expect(streamedCall.input).toEqual(wholeCall.input);
    expect(JSON.parse(partial)).toEqual(wholeCall.input);
    expect(final.stop_reason).toBe(whole.stop_reason);
  });
});
