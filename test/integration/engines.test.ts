import type { RunningServer } from '../../src/server.js';
import { goldens } from '../helpers/goldens.js';
import { request, startTestServer } from '../helpers/server.js';

/**
 * openai-python 0.28's `openai.Completion.create(engine="text-davinci-002", prompt=…, max_tokens=10,
 * n=1, stop=None, temperature=0.5)`, replayed as it sends it: its URL (`/engines/{engine}/completions`
 * under api_base), its headers and its JSON (`json.dumps` of the parameters, engine left out).
 */

const golden = goldens['tinystories-gpt2'].prompts[0]!;
const PYTHON_028_HEADERS = {
  'User-Agent': 'OpenAI/v1 PythonBindings/0.28.1',
  'X-OpenAI-Client-User-Agent': JSON.stringify({ bindings_version: '0.28.1', httplib: 'requests', lang: 'python', lang_version: '3.11.7', platform: 'Linux-6.1.0-x86_64-with-glibc2.36', publisher: 'openai', uname: 'Linux 6.1.0 #1 SMP x86_64' }),
  Authorization: 'Bearer sk-anything',
  'Content-Type': 'application/json',
};
/** Python's json.dumps writes ", " and ": " between items. */
const pythonJson = (value: Record<string, unknown>) => JSON.stringify(value).replace(/","/g, '", "').replace(/":/g, '": ').replace(/,"/g, ', "');

describe('the legacy engine routes of openai-python 0.x', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ servedModelNames: ['tinystories-gpt2', 'text-davinci-002'] });
  });
  afterAll(() => server.close());

  it('Completion.create(engine="text-davinci-002", …) as openai-python 0.28 sends it', async () => {
    const body = pythonJson({ prompt: golden.prompt, max_tokens: 10, n: 1, stop: null, temperature: 0 });
    const response = await request(server, 'POST', '/v1/engines/text-davinci-002/completions', body, PYTHON_028_HEADERS);
    expect(response.status).toBe(200);
    // What 0.28 reads off the answer: an OpenAIObject with choices[0].text and usage.
    expect(response.body).toMatchObject({ object: 'text_completion', model: 'tinystories-gpt2', choices: [{ index: 0, text: expect.any(String), finish_reason: 'length' }] });
    expect(golden.completion_text.startsWith(response.body.choices[0].text)).toBe(true);
    expect(response.body.usage.completion_tokens).toBe(10);
  });

  it('ChatCompletion.create(engine=…) posts to /v1/engines/{engine}/chat/completions', async () => {
    const body = pythonJson({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 });
    const response = await request(server, 'POST', '/v1/engines/text-davinci-002/chat/completions', body, PYTHON_028_HEADERS);
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ object: 'chat.completion', choices: [{ message: { role: 'assistant' } }] });
  });

  it('an engine the server does not serve is a 404 naming it', async () => {
    const response = await request(server, 'POST', '/v1/engines/davinci-002/completions', pythonJson({ prompt: 'Hi', max_tokens: 1 }), PYTHON_028_HEADERS);
    expect(response.status).toBe(404);
    expect(response.body.error).toMatchObject({ code: 'model_not_found', param: 'model' });
  });

  it('lists the engine, and answers for the id and each alias, in the legacy shape', async () => {
    const list = await request(server, 'GET', '/v1/engines');
    expect(list.body).toEqual({ object: 'list', data: [{ id: 'tinystories-gpt2', object: 'engine', owner: 'ortserve', ready: true, created: null }] });
    expect((await request(server, 'GET', '/v1/engines/text-davinci-002')).body).toMatchObject({ id: 'text-davinci-002', object: 'engine', ready: true });
    expect((await request(server, 'GET', '/v1/engines/nope')).status).toBe(404);
    const models = await request(server, 'GET', '/v1/models');
    expect(models.body.data.map((card: { id: string }) => card.id)).toEqual(['tinystories-gpt2']);
    expect((await request(server, 'GET', '/v1/models/text-davinci-002')).body).toMatchObject({ id: 'text-davinci-002', object: 'model' });
  });
});
