/** The bench's models, what it reads from their folders, and the prompts every runner is given. */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ensureWeights, PROMPT_TOKENS, ROOT, STORY } from './common.js';
import { ensureBenchModel } from './make-model.js';
import { makeVariant } from '../tools/model-variants.js';

export const BENCH = join(ROOT, 'bench');
/** Batch sizes of the raw loop and of transformers.js. */
export const BATCHES = [1, 16] as const;
export const MAX_ROWS = 16;
/** Prompts built; the first MAX_ROWS whose greedy continuation has no EOS within NEW_TOKENS are used. */
const CANDIDATES = 28;

export const MODELS = {
  default: join(ROOT, 'models/tinystories-gpt2'),
  '124m': join(BENCH, 'models/bench-gpt2-124m'),
  '135m': join(BENCH, 'models/bench-llama-135m'),
  '0.5b': join(BENCH, 'models/bench-qwen2.5-0.5b'),
  '1b': join(BENCH, 'models/bench-llama-3.2-1b'),
} as const;
export type ModelSet = keyof typeof MODELS;
/** Model sets whose folder make-model.ts writes from a config (git-ignored, written when missing). */
const CONFIGS: Partial<Record<ModelSet, string>> = {
  '0.5b': join(BENCH, 'configs/qwen2.5-0.5b.json'),
  '1b': join(BENCH, 'configs/llama-3.2-1b.json'),
};
/**
 * Rounds of every measurement; the run with the median tokens/s is reported. The default model's runs
 * take tens of milliseconds, so one run is mostly noise; the 124M model's take seconds.
 */
export const ROUNDS: Record<ModelSet, number> = { default: 5, '124m': 3, '135m': 3, '0.5b': 3, '1b': 3 };

/**
 * What ortserve serves of a model set: its folder (`as-set`), or the layout int4 exports have
 * (`int4-export`: each layer's attention one GroupQueryAttention with the rotary fused, every MatMul
 * by a weight a MatMulNBits of 4-bit blocks with zero points, accuracy_level 4, as
 * onnxruntime-genai's builder and transformers.js' `model_q4` write them), derived from the folder by
 * tools/model-variants.ts into `<folder>-int4-export/` (git-ignored). The raw loop and llama.cpp
 * run the set's own graph either way.
 */
export const SERVED_LAYOUTS = ['as-set', 'int4-export'] as const;
export type ServedLayout = (typeof SERVED_LAYOUTS)[number];
export const isServedLayout = (value: string): value is ServedLayout => (SERVED_LAYOUTS as readonly string[]).includes(value);

export function ensureServedLayout(dir: string, layout: ServedLayout): string {
  if (layout === 'as-set') return dir;
  const target = `${dir}-${layout}`;
  if (!existsSync(join(target, 'model.onnx'))) makeVariant(['group-query-attention-rotary', 'q4-zero-points'], dir, target);
  return target;
}

/** A model set's folder with its weights, written first where it is missing. */
export async function ensureModel(name: ModelSet): Promise<string> {
  const dir = MODELS[name];
  const config = CONFIGS[name];
  if (config) ensureBenchModel(config, dir);
  await ensureWeights(dir);
  return dir;
}

export interface ModelInfo {
  name: ModelSet;
  dir: string;
  id: string;
  tokenizer: Tokenizer;
  eosIds: Set<number>;
  numHeads: number;
  headDim: number;
}

export function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

export function loadModelInfo(name: ModelSet): ModelInfo {
  const dir = MODELS[name];
  const config = readJson(join(dir, 'config.json'));
  const generation = existsSync(join(dir, 'generation_config.json')) ? readJson(join(dir, 'generation_config.json')) : {};
  const eosIds = new Set<number>();
  for (const id of [generation.eos_token_id ?? config.eos_token_id].flat()) if (typeof id === 'number') eosIds.add(id);
  const numHeads = Number(config.n_head ?? config.num_key_value_heads ?? config.num_attention_heads);
  const queryHeads = Number(config.n_head ?? config.num_attention_heads);
  const hidden = Number(config.n_embd ?? config.hidden_size);
  const tokenizer = new Tokenizer(readJson(join(dir, 'tokenizer.json')), readJson(join(dir, 'tokenizer_config.json')));
  return { name, dir, id: basename(dir), tokenizer, eosIds, numHeads, headDim: Number(config.head_dim ?? hidden / queryHeads) };
}

export interface Prompt {
  text: string;
  ids: number[];
}

/**
 * CANDIDATES different prompts of exactly PROMPT_TOKENS tokens, as text: each starts at a sentence of
 * STORY (or, if that runs short, at a later word) and takes words until it tokenizes to 32 tokens.
 */
export function makePrompts(tokenizer: Tokenizer): Prompt[] {
  const encode = (text: string) => tokenizer.encode(text, { add_special_tokens: true }).ids;
  const words = STORY.join(' ').split(' ');
  const sentenceStarts: number[] = [];
  let at = 0;
  for (const sentence of STORY) {
    sentenceStarts.push(at);
    at += sentence.split(' ').length;
  }
  const starts = [...sentenceStarts, ...words.map((_, i) => i).filter((i) => !sentenceStarts.includes(i))];
  const prompts: Prompt[] = [];
  const seen = new Set<string>();
  for (const start of starts) {
    for (let end = start + 1; end <= words.length; end++) {
      const text = words.slice(start, end).join(' ');
      const ids = encode(text);
      if (ids.length > PROMPT_TOKENS) break;
      if (ids.length === PROMPT_TOKENS && !seen.has(text)) {
        seen.add(text);
        prompts.push({ text, ids });
        break;
      }
    }
    if (prompts.length === CANDIDATES) return prompts;
  }
  if (prompts.length >= MAX_ROWS) return prompts;
  throw new Error(`could only build ${prompts.length} prompts of exactly ${PROMPT_TOKENS} tokens`);
}
