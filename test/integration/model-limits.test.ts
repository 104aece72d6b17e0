import { ModelLoadError } from '../../src/model/errors.js';
import { copyModel } from '../helpers/model-copy.js';
import { DEFAULT_MODEL, postJson, startTestServer } from '../helpers/server.js';

/** A config.json that promises more than the graph holds is served as the graph can run it. */

const MODEL = 'tinystories-gpt2';

describe('config.json against the graph', () => {
  it('n_positions 1e9 on a graph of 512 positions: the context is 512, and what goes past it is a 400, not a 500', async () => {
    const model = copyModel(DEFAULT_MODEL, { 'config.json': (json) => void (json.n_positions = 1e9) });
    const server = await startTestServer({ model: model.dir, servedModelNames: [MODEL] });
    try {
      expect(server.model.config.contextLength).toBe(512);
      const tooMuch = await postJson(server, '/v1/completions', { model: MODEL, prompt: 'Once upon a time', max_tokens: 600 });
      expect(tooMuch.status).toBe(400);
      expect(tooMuch.body.error.code).toBe('context_length_exceeded');
      const upToTheEnd = await postJson(server, '/v1/completions', { model: MODEL, prompt: 'Once upon a time', max_tokens: 508, temperature: 0, logit_bias: { 0: -100 } });
      expect(upToTheEnd.status).toBe(200);
      expect(upToTheEnd.body.usage.total_tokens).toBe(512);
    } finally {
      await server.close();
      model.remove();
    }
  });

  it("vocab_size larger than the graph's logits: ids past the graph's vocabulary are a 400", async () => {
    const model = copyModel(DEFAULT_MODEL, { 'config.json': (json) => void (json.vocab_size = 5000) });
    const server = await startTestServer({ model: model.dir, servedModelNames: [MODEL] });
    try {
      expect(server.model.config.vocabSize).toBe(4096);
      for (const body of [{ prompt: [1, 4500] }, { prompt: 'Once', logit_bias: { 4500: 5 } }]) {
        const response = await postJson(server, '/v1/completions', { model: MODEL, max_tokens: 2, ...body });
        expect(response.status).toBe(400);
        expect(response.body.error.code).toBe('invalid_value');
      }
    } finally {
      await server.close();
      model.remove();
    }
  });

  it.each([
    ['config.json', 'n_positions', -1],
    ['config.json', 'n_positions', 0],
    ['config.json', 'n_positions', 1.5],
    ['generation_config.json', 'temperature', -5],
    ['generation_config.json', 'top_p', 7],
  ])('%s with %s %p: the server does not start, and says which file and field', async (file, field, value) => {
    const model = copyModel(DEFAULT_MODEL, { [file]: (json) => void (json[field] = value) });
    try {
      const failure = await startTestServer({ model: model.dir }).then(
        async (server) => {
          await server.close();
          return undefined;
        },
        (err: unknown) => err,
      );
      expect(failure).toBeInstanceOf(ModelLoadError);
      expect((failure as Error).message).toContain(file);
      expect((failure as Error).message).toContain(field);
    } finally {
      model.remove();
    }
  });
});
