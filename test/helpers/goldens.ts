import { readFileSync } from 'node:fs';
import { fixture } from './server.js';

export interface GoldenPrompt {
  prompt: string;
  prompt_ids: number[];
  greedy_ids: number[];
  greedy_text: string;
  completion_text: string;
  stops_at_eos: boolean;
  first_step_top5: [number, number][];
}

export interface GoldenTokenizerCase {
  text: string;
  ids: number[];
  tokens: string[];
  decoded: string;
}

export interface GoldenModel {
  prompts: GoldenPrompt[];
  tokenizer: GoldenTokenizerCase[];
}

/** Outputs of Hugging Face transformers for the test models: the numerical truth. */
export const goldens = JSON.parse(readFileSync(fixture('goldens.json'), 'utf8')) as Record<
  'tinystories-gpt2' | 'tiny-gpt2' | 'tiny-llama',
  GoldenModel
>;

export const GOLDEN_MODELS = ['tinystories-gpt2', 'tiny-gpt2', 'tiny-llama'] as const;
