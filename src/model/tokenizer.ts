import { Tokenizer } from '@huggingface/tokenizers';
import type { ModelFiles } from './files.js';
import { ModelLoadError } from './errors.js';
import { pieceBytes } from '../grammar/token-bytes.js';
import { vocabularyKind, type GrammarVocabulary } from '../grammar/vocabulary.js';

/** A special token in tokenizer_config.json is a plain string or an AddedToken object. */
export function specialTokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/** Text ↔ token ids for one model, backed by the model's own tokenizer.json. */
function longestToken(tokenizerJson: Record<string, unknown>): number {
  const model = tokenizerJson.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  const entries: unknown[] = Array.isArray(vocab) ? vocab.map((entry: unknown) => (Array.isArray(entry) ? entry[0] : entry)) : Object.keys(vocab ?? {});
  const added = Array.isArray(tokenizerJson.added_tokens) ? (tokenizerJson.added_tokens as { content?: unknown }[]).map((token) => token.content) : [];
  let longest = 1;
  for (const entry of [...entries, ...added]) if (typeof entry === 'string') longest = Math.max(longest, entry.length);
  return longest;
}

/** Added tokens marked special, by id, with their text. */
function specialTokens(tokenizerJson: Record<string, unknown>): Map<number, string> {
  const added = Array.isArray(tokenizerJson.added_tokens) ? (tokenizerJson.added_tokens as { id?: unknown; content?: unknown; special?: unknown }[]) : [];
  const special = new Map<number, string>();
  for (const token of added) if (token.special === true && typeof token.id === 'number' && typeof token.content === 'string') special.set(token.id, token.content);
  return special;
}

const NO_BYTES = new Uint8Array(0);

export class TextTokenizer {
  readonly bosToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosToken: string | undefined;
  /** Characters in the vocabulary's longest token (added tokens included). */
  readonly longestTokenLength: number;
  private readonly tokenizer: Tokenizer;
  private readonly special: Map<number, string>;
  /** tokenizer_config.json's add_bos_token / add_eos_token, where set: they override the post-processor, as in Hugging Face's tokenizers. */
  private readonly addBos: boolean | undefined;
  private readonly addEos: boolean | undefined;
  private readonly eosTokenId: number | undefined;
  private readonly vocabularyKind: GrammarVocabulary['kind'];

  constructor(files: Pick<ModelFiles, 'tokenizerJson' | 'tokenizerConfig'>) {
    try {
      this.tokenizer = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
    } catch (err) {
      throw new ModelLoadError(`tokenizer.json: cannot build the tokenizer (${(err as Error).message})`);
    }
    this.bosToken = specialTokenText(files.tokenizerConfig.bos_token);
    this.eosToken = specialTokenText(files.tokenizerConfig.eos_token);
    this.longestTokenLength = longestToken(files.tokenizerJson);
    this.special = specialTokens(files.tokenizerJson);
    this.vocabularyKind = vocabularyKind(files.tokenizerJson);
    this.bosTokenId = this.bosToken === undefined ? undefined : this.tokenizer.token_to_id(this.bosToken);
    this.eosTokenId = this.eosToken === undefined ? undefined : this.tokenizer.token_to_id(this.eosToken);
    const flag = (value: unknown) => (typeof value === 'boolean' ? value : undefined);
    this.addBos = flag(files.tokenizerConfig.add_bos_token);
    this.addEos = flag(files.tokenizerConfig.add_eos_token);
  }

  /**
   * A number of tokens `text` certainly has at least, found without tokenizing it: no token covers
   * more than twice the longest vocabulary entry. Lets a huge prompt be refused in microseconds.
   */
  minimumTokens(text: string): number {
    return Math.floor(text.length / (2 * this.longestTokenLength));
  }

  /** Token ids of `text`; `addSpecialTokens` applies the tokenizer's post-processor (a BOS, say). */
  encode(text: string, addSpecialTokens = true): number[] {
    const ids = this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    if (!addSpecialTokens) return ids;
    const { bosTokenId: bos, eosTokenId: eos } = this;
    if (bos !== undefined && this.addBos !== undefined && (ids[0] === bos) !== this.addBos && !(this.bosToken && text.startsWith(this.bosToken))) {
      if (this.addBos) ids.unshift(bos);
      else ids.shift();
    }
    if (eos !== undefined && this.addEos !== undefined && (ids[ids.length - 1] === eos) !== this.addEos && !(this.eosToken && text.endsWith(this.eosToken))) {
      if (this.addEos) ids.push(eos);
      else ids.pop();
    }
    return ids;
  }

  /** Text of `ids`; special tokens (BOS, EOS) are left out unless `skipSpecialTokens` is false. */
  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode(ids as number[], { skip_special_tokens: skipSpecialTokens });
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  specialText(id: number): string | undefined {
    return this.special.get(id);
  }

  /** The bytes a token stands for on its own; none for special tokens and ids past the vocabulary. */
  tokenBytes(id: number): Uint8Array {
    const piece = this.special.has(id) ? undefined : this.idToToken(id);
    return piece === undefined ? NO_BYTES : pieceBytes(piece, this.vocabularyKind);
  }
}
