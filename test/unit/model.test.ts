import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { ChatTemplate, ChatTemplateError, FALLBACK_CHAT_TEMPLATE } from '../../src/model/chat-template.js';
import { readModelConfig } from '../../src/model/config.js';
import { ModelLoadError } from '../../src/model/errors.js';
import { readModelFiles, type ModelFiles } from '../../src/model/files.js';
import { positionTableSize } from '../../src/engine/thread/graph/graph-limits.js';
import { loadModel, servedModel, type LoadedModel } from '../../src/model/model.js';
import { servedLimits } from '../../src/engine/thread/served-limits.js';
import type { GraphLimits } from '../../src/engine/protocol.js';
import { createDecoderSession, defaultThreads, readDecoderSignature } from '../../src/engine/thread/graph/session.js';
import { MODEL_DIRS } from '../helpers/server.js';

const TINY_LLAMA = MODEL_DIRS['tiny-llama']!;
const TINY_GPT2 = MODEL_DIRS['tiny-gpt2']!;
const TINYSTORIES = MODEL_DIRS['tinystories-gpt2']!;

const temporaryRoots: string[] = [];

/** A throw-away copy of a model directory (named `model`). */
function copyModel(source: string): string {
  const root = mkdtempSync(join(tmpdir(), 'ortserve-unit-'));
  temporaryRoots.push(root);
  const dir = join(root, 'model');
  cpSync(source, dir, { recursive: true });
  return dir;
}

afterAll(() => {
  for (const root of temporaryRoots) rmSync(root, { recursive: true, force: true });
});

/** The ModelLoadError `fn` throws. */
function loadError(fn: () => unknown): ModelLoadError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ModelLoadError);
    return err as ModelLoadError;
  }
  throw new Error('expected a ModelLoadError');
}

describe('loadModel', () => {
  it.each([
    ['tinystories-gpt2', TINYSTORIES, { contextLength: 512, eosTokenIds: [0], numLayers: 4, numKvHeads: 8, headDim: 32, vocabSize: 4096, modelType: 'gpt2' }],
    ['tiny-gpt2', TINY_GPT2, { contextLength: 256, eosTokenIds: [50256], numLayers: 2, numKvHeads: 4, headDim: 8, vocabSize: 50257, modelType: 'gpt2' }],
    ['tiny-llama', TINY_LLAMA, { contextLength: 512, eosTokenIds: [2], numLayers: 2, numKvHeads: 2, headDim: 16, vocabSize: 2304, modelType: 'llama' }],
  ])('reads %s: its id is the directory name and its config matches config.json', (name, dir, expected) => {
    const model = loadModel(dir);
    expect(model.id).toBe(name);
    expect(model.config).toMatchObject(expected);
    expect(basename(model.files.modelPath)).toBe('model.onnx');
  });

  it('uses the first served model name as the id, the others as aliases', () => {
    expect(loadModel(TINY_LLAMA, { servedModelNames: ['my-llama'] })).toMatchObject({ id: 'my-llama', aliases: [] });
    expect(loadModel(TINY_LLAMA, { servedModelNames: ['my-llama', 'text-davinci-002'] })).toMatchObject({ id: 'my-llama', aliases: ['text-davinci-002'] });
    expect(loadModel(TINY_LLAMA)).toMatchObject({ id: 'tiny-llama', aliases: [] });
  });

  it("takes sampling defaults from generation_config.json, or temperature 1 and top_p 1 without them", () => {
    expect(loadModel(TINYSTORIES).samplingDefaults).toEqual({ temperature: 0.8, topP: 0.95, topK: 0 });
    expect(loadModel(TINY_LLAMA).samplingDefaults).toEqual({ temperature: 1, topP: 1, topK: 0 });
  });

  it('works without generation_config.json, taking EOS from config.json', () => {
    const dir = copyModel(TINY_LLAMA);
    unlinkSync(join(dir, 'generation_config.json'));
    const model = loadModel(dir);
    expect(model.files.generationConfig).toEqual({});
    expect(model.config.eosTokenIds).toEqual([2]);
    expect(model.samplingDefaults).toEqual({ temperature: 1, topP: 1, topK: 0 });
  });

  it('builds a tokenizer that adds the BOS for tiny-llama and not for the GPT-2 models', () => {
    const llama = loadModel(TINY_LLAMA);
    expect(llama.tokenizer.encode('Hi')[0]).toBe(1);
    expect(llama.tokenizer.bosToken).toBe('<s>');
    expect(llama.tokenizer.eosToken).toBe('</s>');
    const gpt2 = loadModel(TINY_GPT2);
    expect(gpt2.tokenizer.encode('Hi')).not.toContain(50256);
  });

  it("picks model_quantized.onnx when asked for it", () => {
    const model = loadModel(TINYSTORIES, { modelFile: 'model_quantized.onnx' });
    expect(model.files.modelPath).toBe(join(TINYSTORIES, 'model_quantized.onnx'));
  });
});

describe('readModelFiles', () => {
  it('accepts the graph under onnx/', () => {
    const dir = copyModel(TINY_LLAMA);
    mkdirSync(join(dir, 'onnx'));
    renameSync(join(dir, 'model.onnx'), join(dir, 'onnx', 'model.onnx'));
    expect(readModelFiles(dir).modelPath).toBe(join(dir, 'onnx', 'model.onnx'));
  });

  it('prefers the top-level graph when both layouts are present', () => {
    const dir = copyModel(TINY_LLAMA);
    mkdirSync(join(dir, 'onnx'));
    cpSync(join(dir, 'model.onnx'), join(dir, 'onnx', 'model.onnx'));
    expect(readModelFiles(dir).modelPath).toBe(join(dir, 'model.onnx'));
  });

  it('fails on a directory that does not exist, naming it', () => {
    const missing = join(tmpdir(), 'ortserve-no-such-model-dir');
    const error = loadError(() => readModelFiles(missing));
    expect(error.message).toContain('model directory not found');
    expect(error.message).toContain(missing);
  });

  it('fails on a path that is a file, not a directory', () => {
    expect(loadError(() => readModelFiles(join(TINY_LLAMA, 'config.json'))).message).toContain('model directory not found');
  });

  it.each(['config.json', 'tokenizer.json', 'tokenizer_config.json'])('fails when %s is missing, naming it', (file) => {
    const dir = copyModel(TINY_LLAMA);
    unlinkSync(join(dir, file));
    const error = loadError(() => readModelFiles(dir));
    expect(error.message).toContain(`${file} is missing`);
  });

  it('fails when the folder has no graph, naming where and what it looked for', () => {
    const dir = copyModel(TINY_LLAMA);
    unlinkSync(join(dir, 'model.onnx'));
    const error = loadError(() => readModelFiles(dir));
    expect(error.message).toContain(`model graph not found in ${dir} or its onnx/ folder`);
    expect(error.message).toContain('model.onnx, decoder_model_merged.onnx, model_fp16.onnx');
    expect(error.message).toContain('no .onnx files');
  });

  it('fails when the requested model file does not exist, naming it', () => {
    expect(loadError(() => readModelFiles(TINY_LLAMA, 'model_fp16.onnx')).message).toContain('model_fp16.onnx');
  });

  it('refuses a model file outside the model directory', () => {
    expect(loadError(() => readModelFiles(TINY_LLAMA, '../tiny-gpt2/model.onnx')).message).toContain('must be a file name');
  });

  it.each(['config.json', 'tokenizer_config.json', 'generation_config.json'])('fails when %s is not valid JSON, naming it', (file) => {
    const dir = copyModel(TINY_LLAMA);
    writeFileSync(join(dir, file), '{ "n_layer": 2,');
    const error = loadError(() => readModelFiles(dir));
    expect(error.message).toMatch(new RegExp(`^${file.replace('.', '\\.')}: .* is not valid JSON`));
  });

  it('fails when config.json holds JSON that is not an object', () => {
    const dir = copyModel(TINY_LLAMA);
    writeFileSync(join(dir, 'config.json'), '[1, 2]');
    expect(loadError(() => readModelFiles(dir)).message).toMatch(/^config\.json: .* must hold a JSON object/);
  });

  it('reads the JSON files as they are on disk', () => {
    const files = readModelFiles(TINY_LLAMA);
    expect(files.config).toEqual(JSON.parse(readFileSync(join(TINY_LLAMA, 'config.json'), 'utf8')));
    expect(files.tokenizerConfig.eos_token).toBe('</s>');
    expect(files.dir).toBe(TINY_LLAMA);
  });

  it('builds no tokenizer from a tokenizer.json that is not a tokenizer', () => {
    const dir = copyModel(TINY_LLAMA);
    writeFileSync(join(dir, 'tokenizer.json'), '{"hello": "world"}');
    expect(loadError(() => loadModel(dir)).message).toContain('tokenizer.json');
  });
});

describe('readModelConfig', () => {
  const files = (config: Record<string, unknown>, extra: Partial<ModelFiles> = {}): ModelFiles => ({
    dir: '/m',
    modelPath: '/m/model.onnx',
    config,
    generationConfig: {},
    tokenizerJson: {},
    tokenizerConfig: {},
    notes: [],
    ...extra,
  });
  const gpt2 = { n_layer: 2, n_head: 4, n_embd: 32, vocab_size: 100, n_positions: 64 };

  it('derives the head size from the hidden size when head_dim is absent, and kv heads from the heads', () => {
    expect(readModelConfig(files(gpt2))).toMatchObject({ numLayers: 2, numKvHeads: 4, headDim: 8, contextLength: 64 });
  });

  it('falls back to the tokenizer model_max_length for the context length', () => {
    const { n_positions: _, ...noContext } = gpt2;
    expect(readModelConfig(files(noContext, { tokenizerConfig: { model_max_length: 300 } })).contextLength).toBe(300);
  });

  it("rejects the tokenizer's 'no limit' sentinel as a context length", () => {
    const { n_positions: _, ...noContext } = gpt2;
    const error = loadError(() => readModelConfig(files(noContext, { tokenizerConfig: { model_max_length: 1e30 } })));
    expect(error.message).toContain('context length');
  });

  it('names what is missing from config.json', () => {
    const { n_layer: _, ...noLayers } = gpt2;
    expect(loadError(() => readModelConfig(files(noLayers))).message).toContain('number of layers');
    const { vocab_size: __, ...noVocab } = gpt2;
    expect(loadError(() => readModelConfig(files(noVocab))).message).toContain('vocab_size');
  });

  it.each([
    ['n_positions', -1],
    ['n_positions', 0],
    ['n_positions', 1.5],
    ['n_positions', '512'],
    ['n_layer', 0],
    ['n_head', 2.5],
    ['vocab_size', -3],
    ['vocab_size', 1e20],
  ])('refuses %s %p at start-up, naming the file and the field', (field, value) => {
    const message = loadError(() => readModelConfig(files({ ...gpt2, [field]: value }))).message;
    expect(message).toContain('config.json');
    expect(message).toContain(field);
  });

  it('refuses a hidden size that the heads do not divide', () => {
    expect(loadError(() => readModelConfig(files({ ...gpt2, n_embd: 30 }))).message).toContain('not a multiple');
  });

  it('refuses EOS and BOS ids outside the vocabulary, naming the file', () => {
    expect(loadError(() => readModelConfig(files({ ...gpt2, eos_token_id: 100 }))).message).toMatch(/config\.json: eos_token_id 100/);
    expect(loadError(() => readModelConfig(files(gpt2, { generationConfig: { bos_token_id: -1 } }))).message).toMatch(/generation_config\.json: bos_token_id -1/);
  });

  it('takes EOS ids from generation_config.json first, as a list without duplicates', () => {
    const config = readModelConfig(files({ ...gpt2, eos_token_id: 7 }, { generationConfig: { eos_token_id: [3, 5, 3] } }));
    expect(config.eosTokenIds).toEqual([3, 5]);
    expect(readModelConfig(files({ ...gpt2, eos_token_id: 7 })).eosTokenIds).toEqual([7]);
  });
});

describe('sampling defaults from generation_config.json', () => {
  const withGeneration = (generation: Record<string, unknown>) => {
    const dir = copyModel(TINY_GPT2);
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(generation));
    return dir;
  };

  it.each([
    ['temperature', -5],
    ['temperature', 2.5],
    ['temperature', '0.7'],
    ['top_p', 7],
    ['top_p', -0.1],
    ['top_k', -1],
  ])('refuses %s %p at start-up, naming the file and the field', (field, value) => {
    const message = loadError(() => loadModel(withGeneration({ [field]: value }))).message;
    expect(message).toContain('generation_config.json');
    expect(message).toContain(field);
  });

  it('takes values in range as they are', () => {
    expect(loadModel(withGeneration({ temperature: 0.7, top_p: 0.9, top_k: 20 })).samplingDefaults).toEqual({ temperature: 0.7, topP: 0.9, topK: 20 });
  });
});

describe('served limits: the engine reads them off the graph, the model takes them', () => {
  const model = loadModel(TINY_GPT2);
  const fitToGraph = (loaded: LoadedModel, graph: GraphLimits) => servedModel(loaded, servedLimits(loaded.config, graph), graph);

  it('keeps config.json where the graph agrees or fixes nothing', () => {
    expect(fitToGraph(model, { positions: 256, vocabSize: 50257 })).toEqual({ model, warnings: [] });
    expect(fitToGraph(model, {})).toEqual({ model, warnings: [] });
  });

  it("serves the graph's context where its position table is shorter, with a warning", () => {
    const { model: fitted, warnings } = fitToGraph({ ...model, config: { ...model.config, contextLength: 1e9 } }, { positions: 256 });
    expect(fitted.config.contextLength).toBe(256);
    expect(warnings).toEqual([expect.stringContaining('position table has 256 rows')]);
  });

  it("takes the graph's vocabulary where config.json disagrees, with a warning", () => {
    const { model: fitted, warnings } = fitToGraph({ ...model, config: { ...model.config, vocabSize: 60000 } }, { vocabSize: 50257 });
    expect(fitted.config.vocabSize).toBe(50257);
    expect(warnings).toEqual([expect.stringContaining("the graph's logits have 50257")]);
  });

  it('refuses an EOS id outside the vocabulary of the graph', () => {
    expect(loadError(() => fitToGraph(model, { vocabSize: 50000 })).message).toContain('eos_token_id 50256');
  });
});

describe('positionTableSize', () => {
  it.each([
    ['tinystories-gpt2', TINYSTORIES, 'model.onnx', 512],
    ['tinystories-gpt2 (int8)', TINYSTORIES, 'model_quantized.onnx', 512],
    ['tiny-gpt2', TINY_GPT2, 'model.onnx', 256],
    ['tiny-llama (rotary positions)', TINY_LLAMA, 'model.onnx', undefined],
  ])('%s: %p', (_name, dir, file, rows) => {
    expect(positionTableSize(readFileSync(join(dir, file)))).toBe(rows);
  });
});

describe('ChatTemplate', () => {
  it("renders tiny-llama's own template for one user message", () => {
    const model = loadModel(TINY_LLAMA);
    expect(model.chatTemplate.isFallback).toBe(false);
    expect(model.chatTemplate.render([{ role: 'user', content: 'Hi' }])).toBe('<|user|>\nHi</s>\n<|assistant|>\n');
  });

  it("renders a whole conversation with tiny-llama's template, EOS after each turn", () => {
    const model = loadModel(TINY_LLAMA);
    const prompt = model.chatTemplate.render([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'Bye' },
    ]);
    expect(prompt).toBe('<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nBye</s>\n<|assistant|>\n');
  });

  it('uses the fallback template for a model without one', () => {
    const model = loadModel(TINYSTORIES);
    expect(model.chatTemplate.isFallback).toBe(true);
    expect(model.chatTemplate.source).toBe(FALLBACK_CHAT_TEMPLATE);
    expect(model.chatTemplate.render([{ role: 'user', content: 'Hi' }])).toBe('user: Hi\nassistant:');
  });

  it('renders every message as a role: content line with the fallback template', () => {
    const template = new ChatTemplate({}, {});
    const prompt = template.render([
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U' },
      { role: 'assistant', content: 'A' },
    ]);
    expect(prompt).toBe('system: S\nuser: U\nassistant: A\nassistant:');
  });

  it('passes bos_token and eos_token to the template', () => {
    const template = new ChatTemplate({ chat_template: '{{ bos_token }}{{ messages[0].content }}{{ eos_token }}' }, { bosToken: '<s>', eosToken: '</s>' });
    expect(template.render([{ role: 'user', content: 'x' }])).toBe('<s>x</s>');
  });

  it("picks the template named 'default' from a list of named templates", () => {
    const template = new ChatTemplate(
      {
        chat_template: [
          { name: 'tool_use', template: 'TOOLS' },
          { name: 'default', template: 'D:{{ messages[0].content }}' },
        ],
      },
      {},
    );
    expect(template.isFallback).toBe(false);
    expect(template.render([{ role: 'user', content: 'Hi' }])).toBe('D:Hi');
  });

  it('throws a ChatTemplateError when the template raises an exception', () => {
    const dir = copyModel(TINY_LLAMA);
    const configPath = join(dir, 'tokenizer_config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    config.chat_template = "{{ raise_exception('no') }}";
    writeFileSync(configPath, JSON.stringify(config));
    const model = loadModel(dir);
    expect(() => model.chatTemplate.render([{ role: 'user', content: 'Hi' }])).toThrow(ChatTemplateError);
    expect(() => model.chatTemplate.render([{ role: 'user', content: 'Hi' }])).toThrow('no');
  });

  it('fails to load a template that does not parse, with a ModelLoadError naming chat_template', () => {
    const error = loadError(() => new ChatTemplate({ chat_template: '{% for m in messages %}{{ m' }, {}));
    expect(error.message).toContain('chat_template');
  });
});

describe('defaultThreads', () => {
  it('takes every core, and at least one', () => {
    expect(defaultThreads(16)).toBe(16);
    expect(defaultThreads(2)).toBe(2);
    expect(defaultThreads(1)).toBe(1);
  });
});

describe('createDecoderSession', () => {
  it('keeps the graph\'s own attention with attention: as-exported', async () => {
    const model = loadModel(TINY_LLAMA);
    const { session, rewrites } = await createDecoderSession(model.files.modelPath, { device: 'cpu', threads: 1, attention: 'as-exported' });
    try {
      expect(rewrites.some((line) => line.startsWith('slot_attention'))).toBe(false);
      expect(readDecoderSignature(session, model.config)).toMatchObject({ presentNames: ['present.0.key', 'present.0.value', 'present.1.key', 'present.1.value'] });
      expect(readDecoderSignature(session, model.config).pastSlots).toBeUndefined();
    } finally {
      await session.release();
    }
  });
});

describe('readDecoderSignature', () => {
  it('reads the layers, cache names, position ids and cache type of the tiny-llama graph', async () => {
    const model = loadModel(TINY_LLAMA);
    const { session, limits } = await createDecoderSession(model.files.modelPath, { device: 'cpu', threads: 1 });
    try {
      // Rotary positions: the graph fixes no context of its own.
      expect(limits).toEqual({ positions: undefined, vocabSize: 2304 });
      const signature = readDecoderSignature(session, model.config);
      expect(signature).toEqual({
        numLayers: 2,
        numKvHeads: 2,
        headDim: 16,
        kvType: 'float32',
              hasPositionIds: true,
        hasUseCacheBranch: false,
        hasLogitsPositions: true,
        pastNames: ['past_key_values.0.key', 'past_key_values.0.value', 'past_key_values.1.key', 'past_key_values.1.value'],
        presentNames: ['present.0.key', 'present.0.value', 'present.1.key', 'present.1.value'],
        newKvNames: ['new_key_values.0.key', 'new_key_values.0.value', 'new_key_values.1.key', 'new_key_values.1.value'],
        // The slot_attention edit took present.* out.
        pastSlots: true,
      });
    } finally {
      await session.release();
    }
  });

  it('fails to create a session from a file that is not an ONNX graph, naming the file', async () => {
    const path = join(copyModel(TINY_LLAMA), 'config.json');
    await expect(createDecoderSession(path, { device: 'cpu', threads: 1 })).rejects.toThrow(ModelLoadError);
    await expect(createDecoderSession(path, { device: 'cpu', threads: 1 })).rejects.toThrow(path);
  });

  describe('on made-up graph metadata', () => {
    type Meta = ort.InferenceSession.ValueMetadata;
    const tensor = (name: string, type: string, shape: (number | string)[]): Meta => ({ name, isTensor: true, type, shape }) as unknown as Meta;
    const past = (layers: number, type = 'float32', heads: number | string = 'h', dim: number | string = 'd'): Meta[] =>
      Array.from({ length: layers }, (_, i) =>
        ['key', 'value'].map((kind) => tensor(`past_key_values.${i}.${kind}`, type, ['batch', heads, 'past', dim])),
      ).flat();
    const present = (layers: number, type = 'float32'): Meta[] =>
      Array.from({ length: layers }, (_, i) => ['key', 'value'].map((kind) => tensor(`present.${i}.${kind}`, type, ['b', 'h', 't', 'd']))).flat();
    const base = [tensor('input_ids', 'int64', ['b', 's']), tensor('attention_mask', 'int64', ['b', 't'])];
    const logits = tensor('logits', 'float32', ['b', 's', 'v']);
    const config = { numKvHeads: 3, headDim: 5 };
    const session = (inputMetadata: Meta[], outputMetadata: Meta[]) => ({ inputMetadata, outputMetadata });

    it('takes kv heads and head size from config when the graph leaves them symbolic', () => {
      const signature = readDecoderSignature(session([...base, ...past(3)], [logits, ...present(3)]), config);
      expect(signature).toMatchObject({ numLayers: 3, numKvHeads: 3, headDim: 5, hasPositionIds: false, hasUseCacheBranch: false });
      expect(signature.pastNames[4]).toBe('past_key_values.2.key');
    });

    it('prefers the sizes written in the graph over config', () => {
      const signature = readDecoderSignature(session([...base, ...past(1, 'float32', 6, 64)], [logits, ...present(1)]), config);
      expect(signature).toMatchObject({ numKvHeads: 6, headDim: 64 });
    });

    it('puts the cache names in layer order whatever order the graph lists them in', () => {
      const signature = readDecoderSignature(session([...base, ...past(2).reverse()], [logits, ...present(2).reverse()]), config);
      expect(signature.pastNames).toEqual(['past_key_values.0.key', 'past_key_values.0.value', 'past_key_values.1.key', 'past_key_values.1.value']);
      expect(signature.presentNames).toEqual(['present.0.key', 'present.0.value', 'present.1.key', 'present.1.value']);
    });

    it("uses the new keys and values a graph outputs on their own only when it outputs every layer's", () => {
      const newKv = (layers: number) =>
        Array.from({ length: layers }, (_, i) => ['key', 'value'].map((kind) => tensor(`new_key_values.${i}.${kind}`, 'float32', ['b', 'h', 's', 'd']))).flat();
      const inputs = [...base, ...past(2)];
      expect(readDecoderSignature(session(inputs, [logits, ...present(2)]), config).newKvNames).toBeUndefined();
      expect(readDecoderSignature(session(inputs, [logits, ...present(2), ...newKv(2).slice(1)]), config).newKvNames).toBeUndefined();
      expect(readDecoderSignature(session(inputs, [logits, ...present(2), ...newKv(2).reverse()]), config).newKvNames).toEqual([
        'new_key_values.0.key',
        'new_key_values.0.value',
        'new_key_values.1.key',
        'new_key_values.1.value',
      ]);
    });

    it('takes a graph with new keys and values but no present.* as one whose past is held in slots', () => {
      const newKv = Array.from({ length: 2 }, (_, i) => ['key', 'value'].map((kind) => tensor(`new_key_values.${i}.${kind}`, 'float32', ['b', 'h', 's', 'd']))).flat();
      const inputs = [...base, ...past(2)];
      expect(readDecoderSignature(session(inputs, [logits, ...newKv]), config)).toMatchObject({ pastSlots: true, newKvNames: newKv.map((meta) => meta.name) });
      expect(readDecoderSignature(session(inputs, [logits, ...present(2), ...newKv]), config).pastSlots).toBeUndefined();
      expect(() => readDecoderSignature(session(inputs, [logits, ...newKv.slice(1)]), config)).toThrow(/output present.0.key is missing/);
    });

    it('detects a float16 cache and a merged decoder', () => {
      const signature = readDecoderSignature(
        session([...base, tensor('use_cache_branch', 'bool', [1]), ...past(1, 'float16')], [tensor('logits', 'float16', ['b', 's', 'v']), ...present(1, 'float16')]),
        config,
      );
      expect(signature).toMatchObject({ kvType: 'float16', hasUseCacheBranch: true });
    });

    it('rejects a graph without a KV cache, naming the export task', () => {
      expect(loadError(() => readDecoderSignature(session(base, [logits]), config)).message).toContain('text-generation-with-past');
    });

    it('rejects a graph without logits', () => {
      expect(loadError(() => readDecoderSignature(session([...base, ...past(1)], present(1)), config)).message).toContain('logits');
    });

    it('rejects an input it does not know how to feed, naming it', () => {
      const inputs = [...base, tensor('token_type_ids', 'int64', ['b', 's']), ...past(1)];
      expect(loadError(() => readDecoderSignature(session(inputs, [logits, ...present(1)]), config)).message).toContain('token_type_ids');
    });

    it('rejects a missing attention_mask', () => {
      expect(loadError(() => readDecoderSignature(session([base[0]!, ...past(1)], [logits, ...present(1)]), config)).message).toContain('attention_mask');
    });

    it('rejects a cache with a layer missing, naming it', () => {
      const inputs = [...base, ...past(3).filter((m) => !m.name.startsWith('past_key_values.1.'))];
      expect(loadError(() => readDecoderSignature(session(inputs, [logits, ...present(3)]), config)).message).toContain('past_key_values.1.key');
    });

    it('rejects a present output that is missing, naming it', () => {
      const outputs = [logits, ...present(2).filter((m) => m.name !== 'present.1.value')];
      expect(loadError(() => readDecoderSignature(session([...base, ...past(2)], outputs), config)).message).toContain('present.1.value');
    });

    it('rejects a cache that is neither float32 nor float16', () => {
      expect(loadError(() => readDecoderSignature(session([...base, ...past(1, 'int8')], [logits, ...present(1)]), config)).message).toContain('int8');
    });
  });
});

describe('TextTokenizer.minimumTokens', () => {
  const texts = [
    'Once upon a time, there was a little girl named Lily.',
    ' '.repeat(3000),
    '-'.repeat(5000),
    '<|endoftext|>'.repeat(50),
    'ü🙂中文'.repeat(400),
    'a'.repeat(20000),
    Array.from({ length: 2000 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 90))).join(''),
  ];

  it.each(Object.entries(MODEL_DIRS))('never claims more tokens than %s gives', (_, dir) => {
    const { tokenizer } = loadModel(dir, { modelFile: 'model.onnx', servedModelNames: undefined });
    expect(tokenizer.longestTokenLength).toBeGreaterThan(1);
    for (const text of texts) expect(tokenizer.minimumTokens(text)).toBeLessThanOrEqual(tokenizer.encode(text, false).length);
    expect(tokenizer.minimumTokens('x'.repeat(1_000_000))).toBeGreaterThan(1000);
  });
});
