import { IncrementalDetokenizer, type TokenDecoder } from './detokenizer.js';

/** A token as it stands in a text: the characters it adds there and its own UTF-8 bytes. */
export interface TokenSpelling {
  text: string;
  bytes: number[];
}

/** What spelling tokens needs of a tokenizer. */
export interface SpellingTokenizer extends TokenDecoder {
  decode(ids: readonly number[], skipSpecialTokens?: boolean): string;
  /** The bytes the token stands for on its own (a byte-fallback `<0xE2>` is one byte, 0xE2). */
  tokenBytes(id: number): Uint8Array;
  /** A special token's own text (`<|endoftext|>`); undefined for the others. */
  specialText(id: number): string | undefined;
  bosTokenId: number | undefined;
}

const utf8 = (text: string) => [...Buffer.from(text, 'utf8')];

const startsWith = (bytes: readonly number[], prefix: readonly number[]) => prefix.every((byte, i) => bytes[i] === byte);

/**
 * Spells tokens in context, one after the other: each token's text is what it adds to the decoded
 * text (so a SentencePiece `▁air` after a word is " air", and the pieces join to the text exactly),
 * and its bytes are its own. A token that leaves a character unfinished has no text yet and keeps
 * its bytes; the token that finishes the character carries it, as incremental detokenizers do.
 */
export class TokenSpeller {
  private readonly detokenizer: IncrementalDetokenizer;
  /** Bytes of the tokens taken since the text last ended on a whole character. */
  private heldBytes: number[] = [];
  private held = 0;

  constructor(
    private readonly tokenizer: SpellingTokenizer,
    contextIds: readonly number[],
    private readonly keepSpecialTokens = false,
  ) {
    const decoder = { decode: (ids: readonly number[]) => tokenizer.decode(ids, !keepSpecialTokens) };
    this.detokenizer = new IncrementalDetokenizer(decoder, contextIds);
  }

  /** How many of the last tokens taken wait for the token that finishes their character (their bytes are `heldBytes`). */
  get heldTokens(): number {
    return this.held;
  }

  /** How `id` would be spelled as the next token (a special token by its own text), without taking it. */
  peek(id: number): TokenSpelling {
    const special = this.keepSpecialTokens ? undefined : this.tokenizer.specialText(id);
    if (special !== undefined) return { text: special, bytes: utf8(special) };
    const step = this.detokenizer.peek(id);
    return this.spelling(id, step.text, step.held);
  }

  /** Takes `id` as the next token and spells it. */
  push(id: number): TokenSpelling {
    const step = this.detokenizer.step(id);
    const spelling = this.spelling(id, step.text, step.held);
    this.heldBytes = step.held ? [...this.heldBytes, ...spelling.bytes] : [];
    this.held = step.held ? this.held + 1 : 0;
    return spelling;
  }

  /** At the end: the text still held back (an unfinished character, as U+FFFD). */
  flush(): string {
    this.heldBytes = [];
    this.held = 0;
    return this.detokenizer.flush();
  }

  private spelling(id: number, text: string, held: boolean): TokenSpelling {
    if (held) return { text, bytes: [...this.tokenizer.tokenBytes(id)] };
    if (!text) return { text, bytes: [] };
    const bytes = utf8(text);
    if (this.heldBytes.length === 0) return { text, bytes };
    // The text starts with the character the held bytes began; unless they were no UTF-8 at all
    // (the text shows U+FFFD for them), this token's own bytes are the rest.
    return { text, bytes: startsWith(bytes, this.heldBytes) ? bytes.slice(this.heldBytes.length) : [...this.tokenizer.tokenBytes(id)] };
  }
}
