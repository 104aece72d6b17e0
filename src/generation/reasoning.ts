/**
 * A reasoning model's thinking told apart from its answer: the text between its markers
 * (`<think>` … `</think>`) is `reasoning_content`, the rest `content`, as vLLM's reasoning parsers
 * and llama.cpp's `--reasoning-format` give them.
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

export type ReasoningPiece = { reasoning: string } | { content: string };

/** How long a suffix of `text` could be the start of `marker`. */
function partialMarker(text: string, marker: string): number {
  for (let length = Math.min(marker.length - 1, text.length); length > 0; length--) {
    if (marker.startsWith(text.slice(text.length - length))) return length;
  }
  return 0;
}

/**
 * Splits a reply as it streams. A reply that starts with the start marker (after white space) is
 * thinking until the end marker; one whose prompt opened the thinking is so from its first token;
 * any other reply is all answer. Text that may be the start of a marker is held back until the
 * next piece tells; the markers themselves are in neither part.
 */
export class ReasoningSplitter {
  private state: 'before' | 'inside' | 'after';
  private held = '';
  /** Whether the reply has thought at all (even nothing, between two markers). */
  thought: boolean;

  constructor(
    private readonly format: ReasoningFormat,
    startsInside: boolean,
  ) {
    this.state = startsInside ? 'inside' : 'before';
    this.thought = startsInside;
  }

  /** Whether the reply is still in its thinking (or has not yet said whether it thinks). */
  get thinking(): boolean {
    return this.state !== 'after';
  }

  push(text: string): ReasoningPiece[] {
    const pieces: ReasoningPiece[] = [];
    let rest = this.held + text;
    this.held = '';
    while (rest !== '') {
      if (this.state === 'after') {
        pieces.push({ content: rest });
        break;
      }
      if (this.state === 'before') {
        const trimmed = rest.trimStart();
        if (trimmed.startsWith(this.format.start)) {
          this.state = 'inside';
          this.thought = true;
          rest = trimmed.slice(this.format.start.length);
          continue;
        }
        if (trimmed === '' || this.format.start.startsWith(trimmed)) {
          this.held = rest;
          break;
        }
        this.state = 'after';
        continue;
      }
      const end = rest.indexOf(this.format.end);
      if (end >= 0) {
        if (end > 0) pieces.push({ reasoning: rest.slice(0, end) });
        this.state = 'after';
        rest = rest.slice(end + this.format.end.length);
        continue;
      }
      const partial = partialMarker(rest, this.format.end);
      if (rest.length > partial) pieces.push({ reasoning: rest.slice(0, rest.length - partial) });
      this.held = rest.slice(rest.length - partial);
      break;
    }
    return pieces;
  }

  /** What is held back, once the reply has ended: it was not a marker after all. */
  end(): ReasoningPiece[] {
    const held = this.held;
    this.held = '';
    if (held === '') return [];
    return this.state === 'inside' ? [{ reasoning: held }] : [{ content: held }];
  }
}

/** A whole reply split: its thinking (undefined when it has none) and its answer. */
export function splitReasoning(text: string, format: ReasoningFormat, startsInside: boolean): { reasoning?: string; content: string } {
  const splitter = new ReasoningSplitter(format, startsInside);
  let reasoning: string | undefined;
  let content = '';
  for (const piece of [...splitter.push(text), ...splitter.end()]) {
    if ('reasoning' in piece) reasoning = (reasoning ?? '') + piece.reasoning;
    else content += piece.content;
  }
  if (splitter.thought) reasoning ??= '';
  return { ...(reasoning !== undefined && { reasoning }), content };
}
