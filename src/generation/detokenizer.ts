/** Turns token ids into text. */
export interface TokenDecoder {
  decode(ids: readonly number[]): string;
}

/** Tokens of the prompt decoded along with the first new ones, so that the first piece decodes in context. */
const CONTEXT_TOKENS = 5;
const REPLACEMENT_CHARACTER = '\uFFFD';

/** What one more token adds to the text. */
export interface TextStep {
  text: string;
  /** The token leaves a character unfinished: its bytes wait for the token that finishes it. */
  held: boolean;
}

/**
 * Decodes generated tokens one at a time into text deltas whose concatenation equals
 * decode(prompt + generated) minus decode(prompt). Every step decodes a short window that starts a
 * few tokens back, so tokenizers whose pieces depend on their neighbours (SentencePiece's leading
 * `▁`, byte fallback) come out right, and a delta that ends in a partial UTF-8 character is held
 * back until the character is complete.
 */
export class IncrementalDetokenizer {
  private readonly ids: number[];
  private prefixOffset: number;
  private readOffset: number;
  /** decode(ids[prefixOffset, readOffset)), kept while the offsets stay. */
  private prefixText: string | undefined;

  constructor(
    private readonly decoder: TokenDecoder,
    contextIds: readonly number[],
  ) {
    this.ids = contextIds.slice(Math.max(0, contextIds.length - CONTEXT_TOKENS));
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }

  /** What `tokenId` would add now, without taking it. */
  peek(tokenId: number): TextStep {
    return this.delta(this.decoder.decode([...this.ids.slice(this.prefixOffset), tokenId]));
  }

  /** Adds one token; returns the text it completes (possibly empty). */
  push(tokenId: number): string {
    return this.step(tokenId).text;
  }

  /** Adds one token; returns the text it completes and whether it leaves a character unfinished. */
  step(tokenId: number): TextStep {
    this.ids.push(tokenId);
    const step = this.delta(this.decoder.decode(this.ids.slice(this.prefixOffset)));
    if (step.text) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.prefixText = undefined;
    }
    return step;
  }

  /** At the end of generation: whatever is still held back, broken characters and all. */
  flush(): string {
    const prefixText = this.prefix();
    const fullText = this.decoder.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    this.prefixText = undefined;
    return fullText.length > prefixText.length ? fullText.slice(prefixText.length) : '';
  }

  private delta(fullText: string): TextStep {
    if (fullText.endsWith(REPLACEMENT_CHARACTER)) return { text: '', held: true };
    const prefixText = this.prefix();
    return { text: fullText.length > prefixText.length ? fullText.slice(prefixText.length) : '', held: false };
  }

  private prefix(): string {
    return (this.prefixText ??= this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset)));
  }
}
