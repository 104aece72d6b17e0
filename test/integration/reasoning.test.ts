import type OpenAI from 'openai';
import type { RunningServer } from '../../src/server.js';
import { copyModel } from '../helpers/model-copy.js';
import { MODEL_DIRS, openaiClient, postJson, startTestServer } from '../helpers/server.js';

/**
 * A model that thinks aloud answers with `reasoning_content` apart from `content`. The fixture is the
 * tiny Llama with a template in DeepSeek-R1's manner: its generation prompt opens `<think>`, and it
 * renders an earlier reply's reasoning_content back. The model's random weights never close the
 * thinking, so every reply is thinking cut short by max_tokens.
 */

const MODEL = 'tiny-thinker';
const TEMPLATE =
  "{% for m in messages %}{% if m.role == 'user' %}<|user|>{{ m.content }}{% elif m.role == 'assistant' %}<|assistant|>" +
  "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}{% endif %}{% endfor %}" +
  "{% if reasoning_effort %}[effort: {{ reasoning_effort }}]{% endif %}{% if add_generation_prompt %}<|assistant|><think>\n" +
  '{% if enable_thinking is false %}</think>\n{% endif %}{% endif %}';
const question = [{ role: 'user' as const, content: 'Two and two?' }];

describe('a model that thinks aloud', () => {
  const model = copyModel(MODEL_DIRS['tiny-llama']!, { 'tokenizer_config.json': (json) => void (json.chat_template = TEMPLATE) });
  let server: RunningServer;
  let client: OpenAI;
  beforeAll(async () => {
    server = await startTestServer({ model: model.dir, servedModelNames: [MODEL] });
    client = openaiClient(server).client;
  });
  afterAll(async () => {
    await server.close();
    model.remove();
  });

  /** What the model writes after the rendered conversation, as a plain completion of its token ids. */
  async function rawReply(maxTokens: number): Promise<string> {
    const tokenized = await postJson(server, '/tokenize', { model: MODEL, messages: question });
    const completion = await postJson(server, '/v1/completions', { model: MODEL, prompt: tokenized.body.tokens, max_tokens: maxTokens, temperature: 0 });
    return completion.body.choices[0].text;
  }

  it('a reply cut short inside its thinking: all of it reasoning_content, content null, finish_reason length', async () => {
    const reply = await client.chat.completions.create({ model: MODEL, messages: question, max_tokens: 12, temperature: 0 });
    const message = reply.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string | null };
    expect(reply.choices[0]!.finish_reason).toBe('length');
    expect(message.content).toBeNull();
    expect(message.reasoning_content).toBe(await rawReply(12));
    expect(message.reasoning_content!.length).toBeGreaterThan(0);
  });

  it('streamed: reasoning_content deltas that add up to the whole, and no content', async () => {
    const whole = await client.chat.completions.create({ model: MODEL, messages: question, max_tokens: 12, temperature: 0 });
    const stream = await client.chat.completions.create({ model: MODEL, messages: question, max_tokens: 12, temperature: 0, stream: true });
    let reasoning = '';
    let content = '';
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      reasoning += delta?.reasoning_content ?? '';
      content += delta?.content ?? '';
    }
    expect(reasoning).toBe((whole.choices[0]!.message as { reasoning_content?: string }).reasoning_content);
    expect(content).toBe('');
  });

  it("renders an earlier reply's reasoning_content back through the template", async () => {
    const history = (reasoning?: string) => [...question, { role: 'assistant', content: 'Four.', ...(reasoning && { reasoning_content: reasoning }) }, { role: 'user', content: 'Sure?' }];
    const rendered = async (reasoning?: string) => {
      const { tokens } = (await postJson(server, '/tokenize', { model: MODEL, messages: history(reasoning) })).body;
      return (await postJson(server, '/detokenize', { model: MODEL, tokens })).body.prompt as string;
    };
    expect(await rendered('Two and two make four.')).toBe((await rendered()).replace('<|assistant|>Four.', '<|assistant|><think>Two and two make four.</think>Four.'));
  });

  it('reasoning_effort (chat) and reasoning.effort (Responses) reach the template as the variable reasoning_effort', async () => {
    const asKwarg = await postJson(server, '/tokenize', { model: MODEL, messages: question, chat_template_kwargs: { reasoning_effort: 'high' } });
    const plain = await postJson(server, '/tokenize', { model: MODEL, messages: question });
    expect(asKwarg.body.count).toBeGreaterThan(plain.body.count);
    const chat = await client.chat.completions.create({ model: MODEL, messages: question, max_tokens: 1, reasoning_effort: 'high' });
    expect(chat.usage!.prompt_tokens).toBe(asKwarg.body.count);
    const response = await client.responses.create({ model: MODEL, input: question, max_output_tokens: 1, reasoning: { effort: 'high' } });
    expect(response.usage!.input_tokens).toBe(asKwarg.body.count);
    const summary = await postJson(server, '/v1/responses', { model: MODEL, input: 'Hi', reasoning: { summary: 'auto' } });
    expect([summary.status, summary.body.error.param]).toEqual([400, 'reasoning.summary']);
  });

  it('Responses: the thinking as a reasoning item before any message, whole and streamed, its tokens counted', async () => {
    const raw = await rawReply(12);
    const response = await client.responses.create({ model: MODEL, input: question, max_output_tokens: 12, temperature: 0 });
    expect(response.status).toBe('incomplete');
    // Cut short inside its thinking: no message.
    expect(response.output.map((item) => item.type)).toEqual(['reasoning']);
    const [item] = response.output as OpenAI.Responses.ResponseReasoningItem[];
    expect(item!.content).toEqual([{ type: 'reasoning_text', text: raw }]);
    expect(response.usage!.output_tokens_details.reasoning_tokens).toBe(12);
    const stream = await client.responses.create({ model: MODEL, input: question, max_output_tokens: 12, temperature: 0, stream: true });
    let deltas = '';
    let done: OpenAI.Responses.Response | undefined;
    const types = new Set<string>();
    for await (const event of stream) {
      types.add(event.type);
      if (event.type === 'response.reasoning_text.delta') deltas += event.delta;
      if (event.type === 'response.incomplete') done = event.response;
    }
    expect(deltas).toBe(raw);
    expect(types).toEqual(new Set(['response.created', 'response.in_progress', 'response.output_item.added', 'response.reasoning_text.delta', 'response.reasoning_text.done', 'response.output_item.done', 'response.incomplete']));
    expect(done!.output).toEqual([expect.objectContaining({ type: 'reasoning', status: 'incomplete', content: [{ type: 'reasoning_text', text: raw }] })]);
    expect(done!.usage!.output_tokens_details.reasoning_tokens).toBe(12);
  });

  it('the Messages API gives the thinking as a thinking block, whole and streamed', async () => {
    const raw = await rawReply(12);
    const message = await postJson(server, '/v1/messages', { model: MODEL, max_tokens: 12, temperature: 0, messages: question });
    expect(message.status).toBe(200);
    expect(message.body.content).toEqual([{ type: 'thinking', thinking: raw, signature: '' }]);
    expect(message.body.stop_reason).toBe('max_tokens');
    const response = await fetch(`${server.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, max_tokens: 12, temperature: 0, messages: question, stream: true }),
    });
    const events = (await response.text())
      .split('\n\n')
      .filter((event) => event.startsWith('event: '))
      .map((event) => JSON.parse(event.slice(event.indexOf('data: ') + 'data: '.length)) as { type: string; delta?: { type: string; thinking?: string } });
    const thinking = events.flatMap((event) => (event.delta?.type === 'thinking_delta' ? [event.delta.thinking] : [])).join('');
    expect(thinking).toBe(raw);
    expect(events.filter((event) => event.type === 'content_block_start')).toEqual([{ type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } }]);
  });

  it('structured output shapes the answer, not the thinking: cut short inside it, the reply thinks as it would without a grammar', async () => {
    const reply = await client.chat.completions.create({ model: MODEL, messages: question, max_tokens: 12, temperature: 0, response_format: { type: 'json_object' } });
    const message = reply.choices[0]!.message as { content: string | null; reasoning_content?: string | null };
    expect(reply.choices[0]!.finish_reason).toBe('length');
    expect(message.content).toBeNull();
    expect(message.reasoning_content).toBe(await rawReply(12));
  });

  it('a prompt whose thinking is already closed (enable_thinking false) is answered under the grammar from the first token', async () => {
    const reply = await postJson(server, '/v1/chat/completions', {
      model: MODEL,
      messages: question,
      max_tokens: 12,
      temperature: 0,
      response_format: { type: 'json_object' },
      chat_template_kwargs: { enable_thinking: false },
    });
    expect(reply.status).toBe(200);
    const message = reply.body.choices[0].message as { content: string | null; reasoning_content: string | null };
    expect(message.reasoning_content).toBeNull();
    expect(message.content).toMatch(/^\s*\{/);
  });
});

describe('a model whose template has no thinking markers', () => {
  it('answers without reasoning_content, as OpenAI does', async () => {
    const server = await startTestServer({ model: MODEL_DIRS['tiny-llama']!, servedModelNames: [MODEL] });
    try {
      const reply = await postJson(server, '/v1/chat/completions', { model: MODEL, messages: question, max_tokens: 4 });
      expect(reply.status).toBe(200);
      expect(Object.keys(reply.body.choices[0].message)).not.toContain('reasoning_content');
    } finally {
      await server.close();
    }
  });
});
