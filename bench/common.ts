/** Types and helpers shared by bench/run.ts and the transformers.js child process. */

export const PROMPT_TOKENS = 32;
export const NEW_TOKENS = 64;

/** What bench/run.ts hands the transformers.js child (as JSON in argv[2]). */
export interface TransformersJob {
  /** Folder that holds `<modelName>/` in transformers.js's layout (config at the top, graph under onnx/). */
  localModelPath: string;
  modelName: string;
  /** Prompt ids (each PROMPT_TOKENS long), as our tokenizer gives them. */
  prompts: number[][];
  /** The same prompts as text, tokenized again by transformers.js's own tokenizer as a check. */
  texts: string[];
  batches: number[];
  /** Runs per batch size; the run with the median end-to-end tokens/s is reported. */
  repeats: number;
  newTokens: number;
  threads: number;
}

export interface TransformersBatchResult {
  batch: number;
  /** Wall time of `generate` with max_new_tokens 1 (prefill plus one arg-max), ms. */
  prefillMs: number;
  /** Wall time of `generate` with max_new_tokens NEW_TOKENS, ms. */
  generateMs: number;
  /** New tokens per row that `generate` returned (fewer than asked if every row hit EOS). */
  newTokensPerRow: number;
  /** Rows whose new tokens contain an EOS id. */
  rowsWithEos: number;
  /** (batch × new tokens) / generateMs: prefill included. */
  endToEndTokensPerSecond: number;
  /** (batch × (new tokens − 1)) / (generateMs − prefillMs): an estimate of decode alone. */
  decodeTokensPerSecond: number;
}

export interface TransformersChildResult {
  ok: boolean;
  error?: string;
  loadMs?: number;
  /** Whether transformers.js's tokenizer (padding side left) gave the same ids as ours. */
  tokenizerMatches?: boolean;
  /** How the padded batch was built: its tokenizer, or tensors from our ids when that failed. */
  inputsFrom?: string;
  externalData?: string;
  results: TransformersBatchResult[];
}

/** The line prefix of the child's one result line on stdout. */
export const RESULT_PREFIX = 'BENCH_RESULT ';

export const percentile = (values: readonly number[], p: number): number => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest-rank percentile.
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
};

export const mean = (values: readonly number[]): number =>
  values.length === 0 ? NaN : values.reduce((sum, v) => sum + v, 0) / values.length;

/** The run with the median value of `key` (the lower middle one for an even count). */
export function medianRun<T>(runs: readonly T[], key: (run: T) => number): T {
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}
