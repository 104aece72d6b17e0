import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLoadError } from '../../src/model/errors.js';
import { readModelFiles } from '../../src/model/files.js';
import { locateModel } from '../../src/model/hub/locate.js';
import { loadModel } from '../../src/model/model.js';
import { readModelConfig } from '../../src/model/config.js';
import { copyModel } from '../helpers/model-copy.js';
import { MODEL_DIRS } from '../helpers/server.js';

/** Model folders as the Hugging Face hub and its exporters lay them out. */

const TINY_LLAMA = MODEL_DIRS['tiny-llama']!;
const copies: { remove(): void }[] = [];
const copy = (edits?: Parameters<typeof copyModel>[1]) => {
  const made = copyModel(TINY_LLAMA, edits);
  copies.push(made);
  return made.dir;
};
afterAll(() => copies.forEach((made) => made.remove()));

function loadError(run: () => unknown): ModelLoadError {
  try {
    run();
  } catch (err) {
    if (err instanceof ModelLoadError) return err;
    throw err;
  }
  throw new Error('no error');
}

/** Moves the graph to `name` (under `onnx/` when it has a slash). */
function moveGraph(dir: string, name: string): void {
  if (name.includes('/')) mkdirSync(join(dir, name.split('/')[0]!), { recursive: true });
  renameSync(join(dir, 'model.onnx'), join(dir, name));
}

describe('finding the graph', () => {
  it.each([
    [['onnx/model_quantized.onnx'], 'onnx/model_quantized.onnx'],
    [['onnx/model_q4.onnx', 'onnx/model_fp16.onnx', 'onnx/model_int8.onnx'], 'onnx/model_fp16.onnx'],
    [['decoder_model_merged.onnx', 'onnx/model_q4f16.onnx'], 'decoder_model_merged.onnx'],
    [['onnx/decoder_model_merged_quantized.onnx'], 'onnx/decoder_model_merged_quantized.onnx'],
    [['model.onnx', 'onnx/model_fp16.onnx'], 'model.onnx'],
  ])('among %j takes %s, and the log note says why', (present, chosen) => {
    const dir = copy();
    const graph = readFileSync(join(dir, 'model.onnx'));
    unlinkSync(join(dir, 'model.onnx'));
    for (const name of present) {
      if (name.includes('/')) mkdirSync(join(dir, 'onnx'), { recursive: true });
      writeFileSync(join(dir, name), graph);
    }
    const files = readModelFiles(dir);
    expect(files.modelPath).toBe(join(dir, chosen));
    const note = files.notes.find((line) => line.startsWith('graph '))!;
    expect(note).toContain(chosen);
    if (present.length > 1) expect(note).toContain(present.find((name) => name !== chosen));
  });

  it('--model-file still picks the graph; a name that is not there lists what is', () => {
    const dir = copy();
    moveGraph(dir, 'onnx/model_uint8.onnx');
    expect(readModelFiles(dir, 'model_uint8.onnx').modelPath).toBe(join(dir, 'onnx', 'model_uint8.onnx'));
    const error = loadError(() => readModelFiles(dir, 'model_q4.onnx'));
    expect(error.message).toContain('model_q4.onnx');
    expect(error.message).toContain('the folder has onnx/model_uint8.onnx');
  });

  it("--dtype picks the graph by transformers.js' names; a dtype the folder lacks lists those it has", () => {
    const dir = copy();
    const graph = readFileSync(join(dir, 'model.onnx'));
    mkdirSync(join(dir, 'onnx'), { recursive: true });
    for (const name of ['onnx/model_q4.onnx', 'onnx/model_quantized.onnx', 'decoder_model_merged_fp16.onnx']) writeFileSync(join(dir, name), graph);
    expect(readModelFiles(dir, undefined, 'q4').modelPath).toBe(join(dir, 'onnx', 'model_q4.onnx'));
    expect(readModelFiles(dir, undefined, 'q8').modelPath).toBe(join(dir, 'onnx', 'model_quantized.onnx'));
    expect(readModelFiles(dir, undefined, 'fp16').modelPath).toBe(join(dir, 'decoder_model_merged_fp16.onnx'));
    expect(readModelFiles(dir, undefined, 'fp32').modelPath).toBe(join(dir, 'model.onnx'));
    expect(readModelFiles(dir, undefined, 'q4').notes).toContain('graph onnx/model_q4.onnx: --dtype q4');
    const missing = loadError(() => readModelFiles(dir, undefined, 'q4f16'));
    expect(missing.message).toContain('no q4f16 graph');
    expect(missing.message).toContain('the folder has --dtype fp32, fp16, q8, q4');
    expect(loadError(() => readModelFiles(dir, 'model_q4.onnx', 'q4')).message).toContain('give one of them');
  });

  it('a folder whose graphs have other names says which it saw', () => {
    const dir = copy();
    moveGraph(dir, 'onnx/my-export.onnx');
    const error = loadError(() => readModelFiles(dir));
    expect(error.message).toContain('the folder has onnx/my-export.onnx: name one with --model-file');
  });
});

describe('onnxruntime-genai folders', () => {
  /** tiny-llama as the genai model builder lays it out: genai_config.json, no config.json. */
  function genaiFolder(fields: Record<string, unknown> = {}): string {
    const dir = copy();
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number>;
    moveGraph(dir, 'decoder.onnx');
    unlinkSync(join(dir, 'config.json'));
    const genai = {
      model: {
        type: 'llama',
        vocab_size: config.vocab_size,
        context_length: config.max_position_embeddings,
        bos_token_id: 1,
        eos_token_id: 2,
        decoder: {
          filename: 'decoder.onnx',
          head_size: config.hidden_size! / config.num_attention_heads!,
          hidden_size: config.hidden_size,
          num_attention_heads: config.num_attention_heads,
          num_hidden_layers: config.num_hidden_layers,
          num_key_value_heads: config.num_key_value_heads,
          inputs: { input_ids: 'input_ids', attention_mask: 'attention_mask', past_key_names: 'past_key_values.%d.key', past_value_names: 'past_key_values.%d.value' },
          outputs: { logits: 'logits', present_key_names: 'present.%d.key', present_value_names: 'present.%d.value' },
          ...fields,
        },
      },
      search: { do_sample: false, temperature: 0.6, top_p: 0.9 },
    };
    writeFileSync(join(dir, 'genai_config.json'), JSON.stringify(genai));
    return dir;
  }

  it('load the graph genai_config.json names, with the sizes config.json would give', () => {
    const dir = genaiFolder();
    const model = loadModel(dir);
    const reference = loadModel(TINY_LLAMA);
    expect(model.files.modelPath).toBe(join(dir, 'decoder.onnx'));
    expect(model.config).toEqual({ ...reference.config, eosTokenIds: [2], bosTokenId: 1 });
    expect(model.files.notes).toContain('config: from genai_config.json (the folder has no config.json)');
  });

  it('are refused, naming the input, where the graph names its inputs otherwise', () => {
    const dir = genaiFolder({ inputs: { input_ids: 'tokens' } });
    expect(loadError(() => readModelFiles(dir)).message).toContain('input_ids is named "tokens"');
  });
});

describe('a Hugging Face hub id, offline', () => {
  const silent = { info: () => {}, warn: () => {} };
  const offline = (model: string, env: NodeJS.ProcessEnv, revision = 'main') => locateModel({ model, revision, offline: true }, silent, { env });

  /** A cache with `org/name` at commit `abc123…` (refs/main) and an older one, as huggingface_hub lays it out. */
  const COMMIT = 'abc123'.padEnd(40, '0');
  function hubCache(): string {
    const cache = copy();
    const repo = join(cache, 'models--tiny-org--tiny-llama');
    mkdirSync(join(repo, 'snapshots', COMMIT), { recursive: true });
    mkdirSync(join(repo, 'snapshots', 'dead45'.padEnd(40, '0')), { recursive: true });
    mkdirSync(join(repo, 'refs'), { recursive: true });
    writeFileSync(join(repo, 'refs', 'main'), `${COMMIT}\n`);
    for (const name of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.onnx']) copyFileSync(join(TINY_LLAMA, name), join(repo, 'snapshots', COMMIT, name));
    return cache;
  }

  it('is found in $HF_HUB_CACHE at the commit refs/main names', async () => {
    const cache = hubCache();
    const located = await offline('tiny-org/tiny-llama', { HF_HUB_CACHE: cache });
    expect(located.dir).toBe(join(cache, 'models--tiny-org--tiny-llama', 'snapshots', COMMIT));
    expect(located.hubId).toBe('tiny-org/tiny-llama');
    expect(loadModel(located.dir).config.vocabSize).toBe(loadModel(TINY_LLAMA).config.vocabSize);
  });

  it('also under $HF_HOME/hub, and at a commit named as the revision', async () => {
    const home = copy();
    const cache = hubCache();
    renameSync(cache, join(home, 'hub'));
    const old = 'dead45'.padEnd(40, '0');
    expect((await offline('tiny-org/tiny-llama', { HF_HOME: home })).dir).toBe(join(home, 'hub', 'models--tiny-org--tiny-llama', 'snapshots', COMMIT));
    expect((await offline('tiny-org/tiny-llama', { HF_HOME: home }, old)).dir).toBe(join(home, 'hub', 'models--tiny-org--tiny-llama', 'snapshots', old));
  });

  it('that is not cached is an error naming the cache and what to do', async () => {
    const error = await offline('nobody/nothing', { HF_HUB_CACHE: '/nonexistent-cache' }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as Error).message).toContain('/nonexistent-cache');
    expect((error as Error).message).toContain('ortserve pull nobody/nothing');
  });

  it('a path that is neither a folder nor an id is named as a missing folder', async () => {
    const error = await offline('./no/such/folder', {}).catch((err: unknown) => err);
    expect((error as Error).message).toMatch(/model directory not found: .*no\/such\/folder/);
  });
});

describe('chat templates, wherever the folder keeps them', () => {
  const render = (dir: string, tools?: Parameters<ReturnType<typeof loadModel>['chatTemplate']['render']>[1]) =>
    loadModel(dir).chatTemplate.render([{ role: 'user', content: 'Hi' }], tools);

  it('chat_template.jinja wins over tokenizer_config.json', () => {
    const dir = copy();
    writeFileSync(join(dir, 'chat_template.jinja'), 'JINJA {{ messages[0].content }}');
    expect(render(dir)).toBe('JINJA Hi');
    expect(loadModel(dir).files.notes).toContain('chat template: from chat_template.jinja');
  });

  it("tokenizer_config.json's named templates, as a list or an object, give the default and tool_use templates", () => {
    const tools = [{ type: 'function' as const, function: { name: 'f' } }];
    for (const chatTemplate of [
      [{ name: 'default', template: 'LIST {{ messages[0].content }}' }, { name: 'tool_use', template: 'LIST TOOLS {{ tools | length }} {{ messages[0].content }}' }],
      { default: 'LIST {{ messages[0].content }}', tool_use: 'LIST TOOLS {{ tools | length }} {{ messages[0].content }}' },
    ]) {
      const dir = copy({ 'tokenizer_config.json': (json) => void (json.chat_template = chatTemplate) });
      expect(render(dir)).toBe('LIST Hi');
      expect(render(dir, tools)).toBe('LIST TOOLS 1 Hi');
    }
  });

  it('chat_template.json is read where there is no .jinja', () => {
    const dir = copy();
    writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ chat_template: 'JSON {{ messages[0].content }}' }));
    expect(render(dir)).toBe('JSON Hi');
  });

  it("additional_chat_templates/tool_use.jinja renders requests with tools", () => {
    const dir = copy();
    mkdirSync(join(dir, 'additional_chat_templates'));
    writeFileSync(join(dir, 'additional_chat_templates', 'tool_use.jinja'), 'TOOLS {{ tools | length }} {{ messages[0].content }}');
    const tools = [{ type: 'function' as const, function: { name: 'f' } }];
    expect(render(dir, tools)).toBe('TOOLS 1 Hi');
    expect(render(dir)).not.toContain('TOOLS');
  });

  it('chat_template_kwargs reach the template, but cannot replace the messages', () => {
    const dir = copy();
    writeFileSync(join(dir, 'chat_template.jinja'), '{% if enable_thinking is false %}NO-THINK {% endif %}{{ messages[0].content }}');
    const template = loadModel(dir).chatTemplate;
    expect(template.render([{ role: 'user', content: 'Hi' }], undefined, { kwargs: { enable_thinking: false } })).toBe('NO-THINK Hi');
    expect(template.render([{ role: 'user', content: 'Hi' }], undefined, { kwargs: { messages: [] } })).toBe('Hi');
  });
});

describe('BOS and EOS as Hugging Face adds them', () => {
  it('add_bos_token: false leaves out the BOS the post-processor adds; add_eos_token: true appends an EOS', () => {
    const plain = loadModel(TINY_LLAMA).tokenizer;
    const ids = plain.encode('Hello there');
    expect(ids[0]).toBe(plain.bosTokenId);
    const noBos = loadModel(copy({ 'tokenizer_config.json': (json) => void (json.add_bos_token = false) })).tokenizer;
    expect(noBos.encode('Hello there')).toEqual(ids.slice(1));
    const withEos = loadModel(copy({ 'tokenizer_config.json': (json) => void (json.add_eos_token = true) })).tokenizer;
    expect(withEos.encode('Hello there')).toEqual([...ids, withEos.encode('</s>', false)[0]]);
  });

  it('a multimodal config.json is read from its text_config', () => {
    const reference = readModelConfig(readModelFiles(TINY_LLAMA));
    const dir = copy({
      'config.json': (json) => {
        const text = { ...json };
        for (const key of Object.keys(json)) delete json[key];
        Object.assign(json, { model_type: 'llava', text_config: text, vision_config: { hidden_size: 3 } });
      },
    });
    expect(readModelConfig(readModelFiles(dir))).toEqual(reference);
  });
});
