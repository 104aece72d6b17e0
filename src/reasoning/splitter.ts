import { heldPrefixLength } from '../util/text-match.js';
import type { ReasoningFormat } from './formats.js';

/**
 * A reply's thinking told apart from its answer: the text between the markers is
 * `reasoning_content`, the rest `content`.
 */

export type ReasoningPiece = { reasoning: string } | { content: string };

/**
 * Splits a reply as it streams. A reply that starts with the start marker (after white space) is
 * thinking until the end marker; one whose prompt opened the thinking is so from its first token;
 * any other reply is all answer. Text that may be the start of a marker is held back until the
 * next piece tells; the markers themselves are in neither part.
 */
export class ReasoningSplitter {
  private state: 'before' | 'inside' | 'after';
  private held = '';
  private hasThought: boolean;

  constructor(
    private readonly format: ReasoningFormat,
    startsInside: boolean,
  ) {
    this.state = startsInside ? 'inside' : 'before';
    this.hasThought = startsInside;
  }

  /** Whether the reply has thought at all (even nothing, between two markers). */
  get thought(): boolean {
    return this.hasThought;
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
          this.hasThought = true;
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
      const partial = heldPrefixLength(rest, [this.format.end]);
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
