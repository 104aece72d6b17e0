import { grammarVocabulary as buildGrammarVocabulary } from '../../src/grammar/vocabulary.js';
import { defaultConfig } from '../../src/config.js';
import type { Engine } from '../../src/engine/client/engine.js';
import { loadModel } from '../../src/model/model.js';
import { Preprocessor } from '../../src/preprocess/preprocessor.js';
import { OpenAIError } from '../../src/errors.js';
import { ChatCompletionRequestSchema, CompletionRequestSchema } from '../../src/openai/schemas.js';
import type { RequestScope } from '../../src/generation/scope.js';
import type { ServingContext } from '../../src/generation/context.js';
import { ServedModels } from '../../src/generation/served-models.js';
import { validateGeneration } from '../../src/generation/validate.js';
import { chatRequest } from '../../src/openai/chat/request.js';
import { completionRequest } from '../../src/openai/completions/request.js';
import { DEFAULT_MODEL } from '../helpers/server.js';

/** One function per endpoint turns a parsed body into the request the engine runs. */

const MODEL = 'tinystories-gpt2';
const model = loadModel(DEFAULT_MODEL);
let context: ServingContext;
let room = true;
// Only capacity and request groups are asked of the engine while validating.
const engine = { hasRoomFor: () => room, newGroup: () => 41, capacity: 272 } as unknown as Engine;

beforeAll(async () => {
  const grammarVocabulary = buildGrammarVocabulary(model.files.tokenizerJson, model.config.vocabSize);
  const preprocessor = await Preprocessor.start({ tokenizerJson: model.files.tokenizerJson, tokenizerConfig: model.files.tokenizerConfig, grammarVocabulary });
  context = {
    model,
    preprocessor,
    engine,
    systemFingerprint: 'fp_test',
    limits: defaultConfig().limits,
    requestTimeoutMs: 0,
    observer: { firstToken() {}, interToken() {}, finished() {} },
  };
});
afterAll(() => context.preprocessor.close());

const scope: RequestScope = { client: 'test', cachePartition: '', signal: new AbortController().signal };
/** The one model, served as the routes find it: by the name a request gives. */
const models = () =>
  new ServedModels(() => [{ id: MODEL, aliases: [], pinned: true }], async () => ({ bytes: 0, start: async () => ({ context, bytes: 0, close: async () => {} }) }), { keepAliveMs: -1, maxLoaded: 0, budgetBytes: Infinity, loadWaitMs: 0 });
const contextOf = async (name: string) => (await models().acquire(name)).context;
/** What the completions route does with a parsed body: its model found, the body as a generation request, validated. */
async function completion(fields: Record<string, unknown>) {
  const body = CompletionRequestSchema.parse({ model: MODEL, prompt: 'Once upon a time', ...fields });
  return validateGeneration(await contextOf(body.model), completionRequest(body), scope);
}
async function chat(fields: Record<string, unknown>) {
  const body = ChatCompletionRequestSchema.parse({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], ...fields });
  return validateGeneration(await contextOf(body.model), chatRequest(body, context.limits), scope);
}

async function refusal(validation: Promise<unknown>): Promise<OpenAIError> {
  const err = await validation.then(() => undefined, (error: unknown) => error);
  expect(err).toBeInstanceOf(OpenAIError);
  return err as OpenAIError;
}

describe('a completions body, validated', () => {
  it('takes each setting from the request, else generation_config.json, else OpenAI', async () => {
    const defaults = await completion({});
    expect(defaults.engine).toMatchObject({ maxTokens: 16, temperature: 0.8, topP: 0.95, presencePenalty: 0, frequencyPenalty: 0, logitBias: [], stopTokenIds: [0], group: 41 });
    expect(defaults.stop).toEqual([]);
    expect(defaults.engine.seed).toBeUndefined();
    const given = await completion({ max_tokens: 5, temperature: 0, top_p: 0.5, seed: 3, stop: 'x', logit_bias: { 7: -1 } });
    expect(given.engine).toMatchObject({ maxTokens: 5, temperature: 0, topP: 0.5, seed: 3, logitBias: [[7, -1]] });
    expect(given.stop).toEqual(['x']);
  });

  it('gives the prompts as token ids with their text, n and best_of, and what the answer needs', async () => {
    const validated = await completion({ prompt: ['Once', 'The dog'], n: 2, best_of: 3, echo: true, logprobs: 2 });
    expect(validated.prompts).toEqual([model.tokenizer.encode('Once'), model.tokenizer.encode('The dog')]);
    expect(validated.promptTexts).toEqual(['Once', 'The dog']);
    expect(validated).toMatchObject({ n: 2, bestOf: 3, reporting: { echo: true, logprobs: 2, stream: false, includeUsage: false } });
    expect(validated.engine).toMatchObject({ logprobs: 2, promptLogprobs: 2 });
    const ids = await completion({ prompt: [[5, 6, 7]] });
    expect(ids.promptTexts).toEqual([model.tokenizer.decode([5, 6, 7])]);
  });

  it('asks for log-probabilities when best_of has to rank candidates', async () => {
    expect((await completion({ best_of: 2 })).engine.logprobs).toBe(0);
    expect((await completion({})).engine.logprobs).toBeUndefined();
  });

  it.each([
    [{ model: 'other' }, 404, 'model'],
    [{ suffix: 'x' }, 400, 'suffix'],
    [{ n: 3, best_of: 2 }, 400, 'best_of'],
    [{ best_of: 2, stream: true }, 400, 'best_of'],
    [{ max_tokens: 600 }, 400, 'max_tokens'],
    [{ prompt: [[5000]] }, 400, 'prompt'],
    [{ n: 17 }, 400, 'n'],
  ])('refuses %j with %d naming %s', async (fields, status, param) => {
    const err = await refusal(completion(fields));
    expect(err.statusCode).toBe(status);
    expect(err.param).toBe(param);
  });

  it('refuses with 400 what could not fit even an idle engine, naming the field that asks for it', async () => {
    const err = await refusal(completion({ prompt: Array.from({ length: 32 }, () => 'Hi'), n: 9 }));
    expect(err).toMatchObject({ statusCode: 400, param: 'n', code: 'limit_exceeded' });
    expect(err.message).toContain('288 sequences (32 prompts × 9 choices)');
  });

  it('refuses with 429 what the engine has no room for', async () => {
    room = false;
    try {
      expect((await refusal(completion({}))).statusCode).toBe(429);
    } finally {
      room = true;
    }
  });
});

describe('a chat body, validated', () => {
  it('renders the conversation, and leaves max_tokens to the room the context leaves', async () => {
    const validated = await chat({});
    expect(validated.prompts).toEqual([model.tokenizer.encode('user: Hi\nassistant:')]);
    expect(validated.engine.maxTokens).toBe(model.config.contextLength - validated.prompts[0]!.length);
    expect(validated).toMatchObject({ n: 1, bestOf: 1, reporting: { echo: false } });
    expect(validated.reporting.logprobs).toBeUndefined();
  });

  it('takes max_completion_tokens over max_tokens, and top_logprobs with logprobs', async () => {
    const validated = await chat({ max_tokens: 9, max_completion_tokens: 4, logprobs: true, top_logprobs: 3, stream: true, stream_options: { include_usage: true } });
    expect(validated.engine).toMatchObject({ maxTokens: 4, logprobs: 3 });
    expect(validated.reporting).toMatchObject({ stream: true, includeUsage: true });
  });

  it.each([
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'integer', minimum: 'zero' } } } }, 'response_format.json_schema.schema'],
    [{ top_logprobs: 2 }, 'top_logprobs'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }, 'messages[0].content[0].type'],
    [{ max_completion_tokens: 600 }, 'max_completion_tokens'],
  ])('refuses %j naming %s', async (fields, param) => {
    const err = await refusal(chat(fields));
    expect(err.statusCode).toBe(400);
    expect(err.param).toBe(param);
  });
});
