import { conversationKwargs, conversationMessages, messagesRequest } from '../../src/anthropic/messages/request.js';
import { MessagesRequestSchema, type MessagesRequest } from '../../src/anthropic/schemas.js';

const request = (fields: Record<string, unknown>): MessagesRequest =>
  MessagesRequestSchema.parse({ model: 'm', max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }], ...fields });

describe('a Messages API request as the generation request', () => {
  it('system blocks join into the system message; tool results become tool messages before the turn’s text; calls and thinking go on the assistant message', () => {
    const body = request({
      system: [
        { type: 'text', text: 'Be brief.' },
        { type: 'text', text: 'Use tools.' },
      ],
      messages: [
        { role: 'user', content: 'Weather?' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'Call it.', signature: 'x' },
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris', days: 2 } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: 'Sunny' }], is_error: false },
            { type: 'text', text: 'And tomorrow?' },
          ],
        },
      ],
    });
    expect(conversationMessages(body)).toEqual([
      { role: 'system', content: 'Be brief.\nUse tools.' },
      { role: 'user', content: 'Weather?' },
      {
        role: 'assistant',
        content: 'Checking.',
        tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","days":2}' } }],
        reasoning_content: 'Call it.',
      },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'Sunny' },
      { role: 'user', content: 'And tomorrow?' },
    ]);
  });

  it('a failed tool result keeps is_error for the template; a turn of only results has no empty user message', () => {
    const body = request({ messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: 'boom', is_error: true }] }] });
    expect(conversationMessages(body)).toEqual([{ role: 'tool', tool_call_id: 't', content: 'boom', is_error: true }]);
  });

  it('a block this server cannot take is a 400 that names it', () => {
    const body = request({ messages: [{ role: 'user', content: [{ type: 'document', source: {} }] }] });
    expect(() => conversationMessages(body)).toThrow("messages[0].content[0]: content blocks of type 'document' are not supported");
  });

  it.each([
    [{ type: 'auto' }, 'auto', undefined],
    [{ type: 'any' }, 'required', undefined],
    [{ type: 'any', disable_parallel_tool_use: true }, 'required', false],
    [{ type: 'tool', name: 'f' }, { name: 'f' }, undefined],
    [{ type: 'none' }, 'none', undefined],
  ])('tool_choice %j → %j', (choice, expected, parallel) => {
    const { output } = messagesRequest(request({ tools: [{ name: 'f', input_schema: { type: 'object' } }], tool_choice: choice }));
    expect(output.toolChoice).toEqual(expected);
    expect(output.parallelToolCalls).toBe(parallel);
    expect(output.tools).toEqual([{ name: 'f', parameters: { type: 'object' } }]);
  });

  it('sampling, stopping, a JSON output format, and thinking and effort as template variables', () => {
    const body = request({
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
      stop_sequences: ['\n\n'],
      output_config: { format: { type: 'json_schema', schema: { type: 'object' } }, effort: 'high' },
      thinking: { type: 'disabled' },
    });
    const generation = messagesRequest(body);
    expect(generation.sampling).toEqual({ temperature: 0.5, topP: 0.9, topK: 40 });
    expect(generation.stopping).toEqual({ maxTokens: 8, stop: ['\n\n'] });
    expect(generation.output.responseFormat).toEqual({ type: 'json_schema', schema: { type: 'object' } });
    expect(conversationKwargs(body)).toEqual({ enable_thinking: false, reasoning_effort: 'high' });
  });

  it('tool_choice without tools is refused', () => {
    expect(() => messagesRequest(request({ tool_choice: { type: 'any' } }))).toThrow('tools must be given');
  });
});
