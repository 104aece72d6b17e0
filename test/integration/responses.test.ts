import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, stepCountIs, streamText, tool } from 'ai';
import fc from 'fast-check';
import OpenAI from 'openai';
import { z } from 'zod';
import type { RunningServer } from '../../src/server.js';
import { fixture, openaiClient, postJson, startTestServer } from '../helpers/server.js';
import { responseErrors, type ValidatingFetch } from '../helpers/openapi.js';

/** The Responses API (`POST /v1/responses`), judged by the openai SDK and the Vercel AI SDK's default provider. */

const MODEL = 'tinystories-gpt2';
const instructions = 'You tell short stories.';
const input = 'Once upon a time';

describe('POST /v1/responses', () => {
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

  /** The same conversation through chat completions: the reference text. */
  const chatText = async (maxTokens: number) => {
    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: instructions },
        { role: 'user', content: input },
      ],
      temperature: 0,
      max_tokens: maxTokens,
    });
    return chat.choices[0]!.message.content!;
  };

  it('openai.responses.create: the reply chat completions give for the same conversation, with usage, incomplete at the token limit', async () => {
    const response = await client.responses.create({ model: MODEL, instructions, input, temperature: 0, max_output_tokens: 12 });
    expect(response.output_text).toBe(await chatText(12));
    expect(response.output_text.length).toBeGreaterThan(0);
    expect(response).toMatchObject({ object: 'response', status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, model: MODEL, store: false, instructions });
    expect(response.id).toMatch(/^resp_/);
    expect(response.output).toHaveLength(1);
    expect(response.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'incomplete' });
    expect(response.usage).toMatchObject({ output_tokens: 12, total_tokens: response.usage!.input_tokens + 12 });
  });

  it('takes message items with input_text parts, as the same conversation', async () => {
    const response = await client.responses.create({
      model: MODEL,
      input: [
        { role: 'system', content: [{ type: 'input_text', text: instructions }] },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: input }] },
      ],
      temperature: 0,
      max_output_tokens: 12,
    });
    expect(response.output_text).toBe(await chatText(12));
  });

  it('streams the Responses events in order, numbered, their deltas joining to the text', async () => {
    const stream = await client.responses.create({ model: MODEL, instructions, input, temperature: 0, max_output_tokens: 12, stream: true });
    const types: string[] = [];
    const numbers: number[] = [];
    let deltas = '';
    let done: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      numbers.push(event.sequence_number);
      if (event.type === 'response.output_text.delta') deltas += event.delta;
      if (event.type === 'response.incomplete' || event.type === 'response.completed') done = event.response;
    }
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete']);
    expect(types.filter((type) => type === 'response.output_text.delta').length).toBeGreaterThan(1);
    expect(numbers).toEqual(numbers.map((_, i) => i));
    expect(deltas).toBe(await chatText(12));
    expect(done!.output_text ?? (done!.output[0] as OpenAI.Responses.ResponseOutputMessage).content.map((part) => ('text' in part ? part.text : '')).join('')).toBe(deltas);
    expect(done!.usage!.output_tokens).toBe(12);
  });

  it('gives logprobs when included, spelled like chat\'s', async () => {
    const response = await client.responses.create({ model: MODEL, input, temperature: 0, max_output_tokens: 5, include: ['message.output_text.logprobs'], top_logprobs: 2 });
    const text = (response.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText;
    expect(text.logprobs!.map((entry) => entry.token).join('')).toBe(text.text);
    for (const entry of text.logprobs!) expect(entry.top_logprobs).toHaveLength(2);
  });

  it('the Vercel AI SDK default provider: generateText and streamText', async () => {
    const model = createOpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' })(MODEL);
    const reference = await chatText(12);
    const generated = await generateText({ model, system: instructions, prompt: input, temperature: 0, maxOutputTokens: 12, maxRetries: 0 });
    expect(generated.text).toBe(reference);
    expect(generated.finishReason).toBe('length');
    expect(generated.usage.outputTokens).toBe(12);
    const streamed = streamText({ model, system: instructions, prompt: input, temperature: 0, maxOutputTokens: 12, maxRetries: 0 });
    let text = '';
    for await (const delta of streamed.textStream) text += delta;
    expect(text).toBe(reference);
    expect(await streamed.finishReason).toBe('length');
  });

  it.each([
    ['previous_response_id', { previous_response_id: 'resp_123' }, 'previous_response_id'],
    ['store: true', { store: true }, 'store'],
    ['a built-in tool', { tools: [{ type: 'web_search' }] }, 'tools[0].type'],
    ['an item reference', { input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input[0]'],
    ['an image part', { input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://example.com/a.png' }] }] }, 'input[0].content[0].type'],
    ['an include this server cannot give', { include: ['reasoning.encrypted_content'] }, 'include[0]'],
    ['a message without a role', { input: [{ type: 'message', content: 'hi' }] }, 'input[0].role'],
    ['max_output_tokens past the context', { max_output_tokens: 100_000 }, 'max_output_tokens'],
  ])('%s is a 400 naming the field', async (_, fields, param) => {
    const response = await postJson(server, '/v1/responses', { model: MODEL, input, ...fields });
    expect(response.status).toBe(400);
    expect(response.body.error).toMatchObject({ type: 'invalid_request_error', param });
    expect(response.body.error.message.length).toBeGreaterThan(10);
  });

  it('random and hostile bodies → a 2xx or a 4xx in the error shape, never a 5xx', async () => {
    const item = fc.oneof(
      fc.record({ role: fc.constantFrom('user', 'assistant', 'system', 'developer', 'tool', 'x'), content: fc.oneof(fc.string(), fc.array(fc.record({ type: fc.constantFrom('input_text', 'output_text', 'input_image', 'x'), text: fc.string() }), { maxLength: 2 })) }, { requiredKeys: [] }),
      fc.record({ type: fc.constantFrom('function_call', 'function_call_output', 'item_reference', 'reasoning', 'message'), call_id: fc.string(), name: fc.string(), arguments: fc.string(), output: fc.string(), id: fc.string() }, { requiredKeys: ['type'] }),
      fc.anything(),
    );
    const body = fc.record(
      {
        model: fc.oneof(fc.constant(MODEL), fc.string()),
        input: fc.oneof(fc.string({ maxLength: 40 }), fc.array(item, { maxLength: 3 }), fc.anything()),
        instructions: fc.oneof(fc.string({ maxLength: 20 }), fc.constant(null), fc.integer()),
        max_output_tokens: fc.oneof(fc.integer({ min: -2, max: 4 }), fc.constant(null), fc.double()),
        temperature: fc.oneof(fc.double({ min: -1, max: 3 }), fc.constant(null)),
        stream: fc.oneof(fc.boolean(), fc.constant(null)),
        store: fc.oneof(fc.boolean(), fc.constant(null)),
        include: fc.oneof(fc.array(fc.constantFrom('message.output_text.logprobs', 'file_search_call.results', 'x')), fc.anything()),
        top_logprobs: fc.oneof(fc.integer({ min: -1, max: 25 }), fc.constant(null)),
        tools: fc.oneof(fc.array(fc.record({ type: fc.constantFrom('function', 'web_search', 'mcp'), name: fc.constantFrom('f', 'get_weather', 'bad name'), parameters: fc.oneof(fc.constant({ type: 'object' }), fc.anything()) }, { requiredKeys: ['type'] }), { maxLength: 2 }), fc.anything()),
        tool_choice: fc.oneof(fc.constantFrom('none', 'auto', 'required', 'x'), fc.record({ type: fc.constantFrom('function', 'web_search'), name: fc.string() }), fc.anything()),
        text: fc.oneof(fc.record({ format: fc.oneof(fc.record({ type: fc.constantFrom('text', 'json_object', 'json_schema', 'x') }), fc.record({ type: fc.constant('json_schema'), name: fc.constant('s'), schema: fc.oneof(fc.constant({ type: 'object' }), fc.anything()) })) }), fc.anything()),
        previous_response_id: fc.oneof(fc.string(), fc.constant(null)),
        truncation: fc.oneof(fc.constantFrom('disabled', 'auto', 'x'), fc.constant(null)),
        metadata: fc.oneof(fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }), fc.anything()),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(body, async (payload) => {
        const response = await fetch(`${server.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ max_output_tokens: 3, ...payload }) });
        const text = await response.text();
        expect(response.status).toBeLessThan(500);
        expect(responseErrors('/v1/responses', response.status, response.headers.get('content-type') ?? '', text)).toEqual([]);
      }),
      { seed: 2024, numRuns: 150 },
    );
  });

  it('an unknown model is a 404', async () => {
    const response = await postJson(server, '/v1/responses', { model: 'gpt-4o', input });
    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe('model_not_found');
  });
});

describe('POST /v1/responses with function tools and structured output', () => {
  const TOOLS_MODEL = 'tiny-llama-tools';
  const Weather = z.object({ city: z.string().max(8), unit: z.enum(['c', 'f']) });
  const weatherParameters = { type: 'object', properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false };
  let server: RunningServer;
  let client: OpenAI;

  beforeAll(async () => {
    server = await startTestServer({ model: fixture(`models/${TOOLS_MODEL}`) });
    ({ client } = openaiClient(server));
  });
  afterAll(() => server.close());

  const tools: OpenAI.Responses.FunctionTool[] = [{ type: 'function', name: 'get_weather', description: 'The weather in a city', parameters: weatherParameters, strict: true }];

  it('a required call comes back as a function_call item, and its output goes back as an item', async () => {
    const first = await client.responses.create({ model: TOOLS_MODEL, input: 'Weather in Paris?', tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 0, max_output_tokens: 100 });
    const calls = first.output.filter((item): item is OpenAI.Responses.ResponseFunctionToolCall => item.type === 'function_call');
    expect(calls).toHaveLength(1);
    expect(calls[0]!.name).toBe('get_weather');
    expect(Weather.parse(JSON.parse(calls[0]!.arguments))).toBeTruthy();
    expect(calls[0]!.call_id).toMatch(/^call_/);
    const second = await client.responses.create({
      model: TOOLS_MODEL,
      input: [{ role: 'user', content: 'Weather in Paris?' }, calls[0]!, { type: 'function_call_output', call_id: calls[0]!.call_id, output: 'sunny' }],
      tools,
      temperature: 0,
      max_output_tokens: 20,
    });
    expect(second.status === 'completed' || second.status === 'incomplete').toBe(true);
  });

  it("reads an assistant's text, its calls and their outputs as the chat conversation they are", async () => {
    const call = { type: 'function_call' as const, call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' };
    const response = await client.responses.create({
      model: TOOLS_MODEL,
      input: [
        { role: 'user', content: 'Weather in Paris?' },
        { type: 'message', id: 'msg_1', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'Let me look.', annotations: [] }] },
        call,
        { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
      ],
      tools,
      temperature: 0,
      max_output_tokens: 1,
    });
    const chat = await client.chat.completions.create({
      model: TOOLS_MODEL,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: 'Let me look.', tool_calls: [{ id: 'call_1', type: 'function', function: { name: call.name, arguments: call.arguments } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
      ],
      tools: tools.map((tool) => ({ type: 'function' as const, function: { name: tool.name, description: tool.description ?? undefined, parameters: tool.parameters ?? undefined } })),
      temperature: 0,
      max_tokens: 1,
    });
    expect(response.usage!.input_tokens).toBe(chat.usage!.prompt_tokens);
  });

  it('streams a call as function_call_arguments deltas that join to its arguments', async () => {
    const stream = await client.responses.create({ model: TOOLS_MODEL, input: 'Weather in Paris?', tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 0, max_output_tokens: 100, stream: true });
    let deltas = '';
    let item: OpenAI.Responses.ResponseFunctionToolCall | undefined;
    for await (const event of stream) {
      if (event.type === 'response.function_call_arguments.delta') deltas += event.delta;
      if (event.type === 'response.output_item.done' && event.item.type === 'function_call') item = event.item;
    }
    expect(item!.arguments).toBe(deltas);
    expect(Weather.parse(JSON.parse(deltas))).toBeTruthy();
  });

  it('the Vercel AI SDK default provider: a tool call runs and its result goes back; generateObject', async () => {
    const model = createOpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' })(TOOLS_MODEL);
    const calls: unknown[] = [];
    const result = await generateText({
      model,
      prompt: 'Weather in Paris?',
      temperature: 0,
      maxOutputTokens: 100,
      maxRetries: 0,
      toolChoice: 'required',
      stopWhen: stepCountIs(1),
      tools: { get_weather: tool({ description: 'The weather in a city', inputSchema: Weather, execute: async (args) => (calls.push(args), 'sunny') }) },
    });
    expect(calls).toHaveLength(1);
    expect(Weather.parse(calls[0])).toEqual(calls[0]);
    expect(result.toolResults[0]!.output).toBe('sunny');
    const Story = z.object({ mood: z.enum(['happy', 'sad']), done: z.boolean() });
    const { object } = await generateObject({ model, schema: Story, prompt: 'Tell me a story.', temperature: 0, maxOutputTokens: 100, maxRetries: 0 });
    expect(Story.parse(object)).toEqual(object);
  });
});
