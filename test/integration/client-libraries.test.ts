import { createOpenAI } from '@ai-sdk/openai';
import { AIMessage, HumanMessage, ToolMessage } from '@langchain/core/messages';
import { tool as langchainTool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { generateObject, generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';
import type { RunningServer } from '../../src/server.js';
import { fixture, startTestServer } from '../helpers/server.js';

/**
 * LangChain and the Vercel AI SDK, as their users call them: structured output and tools on a
 * Llama-architecture model whose template renders tools, with random weights, so the grammar is
 * what makes every answer valid.
 */

const MODEL = 'tiny-llama-tools';
const Story = z.object({ mood: z.enum(['happy', 'sad']), done: z.boolean(), tags: z.array(z.enum(['cat', 'dog'])).max(2) });
const Weather = z.object({ city: z.string().max(8), unit: z.enum(['c', 'f']) });

let server: RunningServer;
beforeAll(async () => {
  server = await startTestServer({ model: fixture(`models/${MODEL}`) });
});
afterAll(() => server.close());

describe('LangChain (@langchain/openai)', () => {
  const chat = () => new ChatOpenAI({ model: MODEL, apiKey: 'unused', configuration: { baseURL: `${server.url}/v1` }, temperature: 0, maxTokens: 100, maxRetries: 0 });

  it.each(['jsonSchema', 'functionCalling'] as const)('withStructuredOutput (method %s) returns an object of the schema', async (method) => {
    const structured = chat().withStructuredOutput(Story, { name: 'story', method });
    const story = await structured.invoke('Tell me a story.');
    expect(Story.parse(story)).toEqual(story);
  });

  it('withStructuredOutput (method jsonMode) returns a JSON object', async () => {
    // Any object may go on for as long as the model likes: with random weights, this seed's ends.
    const sampled = new ChatOpenAI({ model: MODEL, apiKey: 'unused', configuration: { baseURL: `${server.url}/v1` }, temperature: 1, maxTokens: 160, maxRetries: 0, modelKwargs: { seed: 20 } });
    const structured = sampled.withStructuredOutput(z.object({}).passthrough(), { name: 'anything', method: 'jsonMode' });
    const value = await structured.invoke('Answer in JSON.');
    expect(Object.keys(value).length).toBeGreaterThan(0);
  });

  it('bindTools: calls with arguments of the schema, then an agent history with the results', async () => {
    const weather = langchainTool(async () => 'sunny', { name: 'get_weather', description: 'The weather in a city', schema: Weather });
    const model = chat().bindTools([weather], { tool_choice: 'required', parallel_tool_calls: false });
    const question = new HumanMessage('What is the weather in Paris?');
    const reply = await model.invoke([question]);
    expect(reply.tool_calls).toHaveLength(1);
    const [call] = reply.tool_calls!;
    expect(call!.name).toBe('get_weather');
    expect(Weather.parse(call!.args)).toEqual(call!.args);
    const answer = await chat()
      .bindTools([weather])
      .invoke([question, new AIMessage({ content: '', tool_calls: reply.tool_calls! }), new ToolMessage({ content: 'sunny', tool_call_id: call!.id! })]);
    expect(typeof answer.content).toBe('string');
  });
});

describe('Vercel AI SDK (ai, @ai-sdk/openai)', () => {
  const model = () => createOpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' }).chat(MODEL);

  it('generateObject returns an object of the schema', async () => {
    const { object, finishReason } = await generateObject({ model: model(), schema: Story, prompt: 'Tell me a story.', temperature: 0, maxOutputTokens: 100 });
    expect(finishReason).toBe('stop');
    expect(Story.parse(object)).toEqual(object);
  });

  it('generateText with a tool: the call runs and its result goes back for a second step', async () => {
    const calls: unknown[] = [];
    const result = await generateText({
      model: model(),
      prompt: 'What is the weather in Paris?',
      temperature: 0,
      maxOutputTokens: 100,
      toolChoice: 'required',
      stopWhen: stepCountIs(2),
      tools: {
        get_weather: tool({
          description: 'The weather in a city',
          inputSchema: Weather,
          execute: async (input) => {
            calls.push(input);
            return 'sunny';
          },
        }),
      },
    });
    expect(result.steps).toHaveLength(2);
    expect(calls.length).toBeGreaterThanOrEqual(2);
    for (const input of calls) expect(Weather.parse(input)).toEqual(input);
  });

  it('streamText puts streamed tool calls back together', async () => {
    const result = streamText({
      model: model(),
      prompt: 'What is the weather in Paris?',
      temperature: 0,
      maxOutputTokens: 100,
      toolChoice: 'required',
      tools: { get_weather: tool({ description: 'The weather in a city', inputSchema: Weather }) },
    });
    const toolCalls = await result.toolCalls;
    expect(toolCalls.length).toBeGreaterThanOrEqual(1);
    for (const call of toolCalls) {
      expect(call.toolName).toBe('get_weather');
      expect(Weather.parse(call.input)).toEqual(call.input);
    }
  });
});
