/**
 * How a model that thinks aloud marks its thinking (`<think>` … `</think>`), found in its chat
 * template or named by `--reasoning-parser`, as vLLM's reasoning parsers and llama.cpp's
 * `--reasoning-format` know them.
 */

/** The markers of a model's thinking. */
export interface ReasoningFormat {
  /** The name `--reasoning-parser` takes. */
  name: string;
  start: string;
  end: string;
}

export const REASONING_FORMATS = {
  /** Qwen3, QwQ, DeepSeek-R1 (and its distills), SmolLM3, and every template that writes `<think>`. */
  think: { name: 'think', start: '<think>', end: '</think>' },
} as const satisfies Record<string, ReasoningFormat>;

export type ReasoningParserName = keyof typeof REASONING_FORMATS;

/** What `--reasoning-parser` takes: `auto` (the markers the chat template writes, if any), `none`, or a format's name. */
export const REASONING_PARSERS = ['auto', 'none', ...(Object.keys(REASONING_FORMATS) as ReasoningParserName[])] as const;
export type ReasoningParser = (typeof REASONING_PARSERS)[number];

/** The format a chat template teaches, found by its markers; undefined for a model that does not think aloud. */
export function detectReasoningFormat(templateSource: string): ReasoningFormat | undefined {
  return Object.values(REASONING_FORMATS).find((format) => templateSource.includes(format.start) && templateSource.includes(format.end));
}

/** Whether a prompt (its end, at least) leaves the reply inside the thinking: its generation prompt ends with the start marker, as DeepSeek-R1's does. */
export function opensReasoning(promptEnd: string, format: ReasoningFormat): boolean {
  return promptEnd.trimEnd().endsWith(format.start);
}

/** How a request's reply is read: the model's markers, and whether the prompt has opened the thinking already. */
export interface ReasoningPlan {
  format: ReasoningFormat;
  startsInside: boolean;
}
