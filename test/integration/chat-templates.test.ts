import { readFileSync } from 'node:fs';
import type { RunningServer } from '../../src/server.js';
import { copyModel } from '../helpers/model-copy.js';
import { MODEL_DIRS, postJson, startTestServer } from '../helpers/server.js';

/** A real chat template (Mistral-Nemo's, from test/fixtures/chat-templates) through HTTP. */

const MODEL = 'tiny-nemo';
const template = readFileSync(new URL('../fixtures/chat-templates/templates/mistral-nemo-instruct-2407.jinja', import.meta.url), 'utf8');

describe("a model with Mistral-Nemo's chat template", () => {
  const model = copyModel(MODEL_DIRS['tiny-llama']!, { 'tokenizer_config.json': (json) => void (json.chat_template = template) });
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ model: model.dir, servedModelNames: [MODEL] });
  });
  afterAll(async () => {
    await server.close();
    model.remove();
  });

  it("a conversation the template refuses is a 400 carrying the template's own words", async () => {
    const messages = [
      { role: 'user', content: 'Hi' },
      { role: 'user', content: 'Hello?' },
    ];
    const reply = await postJson(server, '/v1/chat/completions', { model: MODEL, messages, max_tokens: 2 });
    expect(reply.status).toBe(400);
    expect(reply.body.error).toEqual({
      message: expect.stringContaining('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...'),
      type: 'invalid_request_error',
      param: 'messages',
      code: 'invalid_chat_template',
    });
  });

  it('the tools and the detected call format come from the template', async () => {
    expect(server.model.toolCallFormat.name).toBe('mistral');
    const messages = [{ role: 'user', content: 'Weather in Paris?' }];
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const tokenized = await postJson(server, '/tokenize', { model: MODEL, messages, tools });
    const prompt = await postJson(server, '/detokenize', { model: MODEL, tokens: tokenized.body.tokens });
    expect(prompt.body.prompt).toContain('[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather"');
  });
});
