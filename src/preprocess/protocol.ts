import type { GrammarSpec } from '../grammar/grammar-spec.js';
import type { GrammarVocabulary } from '../grammar/vocabulary.js';
import type { ChatMessage, ChatTools, RenderOptions } from '../model/chat-template.js';
import type { ModelFiles } from '../model/files.js';

/** Messages between the server (main thread) and the preprocessing worker, which turns prompts into token ids. */

/** What the workers start from; the grammar vocabulary may still be coming (it is sized to the graph the engine reads). */
export type PreprocessData = Pick<ModelFiles, 'tokenizerJson' | 'tokenizerConfig'> & { grammarVocabulary: GrammarVocabulary | Promise<GrammarVocabulary> };

/** What a worker is for, with only what that takes: prompts (tokenizing, chat templates), checking schemas and grammars, or checking replies. */
export type PreprocessWorkerData =
  | ({ role: 'text' } & Pick<PreprocessData, 'tokenizerJson' | 'tokenizerConfig'>)
  | { role: 'grammar'; grammarVocabulary: GrammarVocabulary }
  | { role: 'replies' };

export type PreprocessTask =
  | { kind: 'encode'; text: string; addSpecialTokens: boolean }
  | { kind: 'decode'; ids: number[]; skipSpecialTokens: boolean }
  /** Renders the chat template, then tokenizes the text, unless it cannot fit `contextLength`. */
  | { kind: 'chat'; messages: ChatMessage[]; tools?: ChatTools; contextLength: number; options?: ChatRenderOptions }
  /** Builds and compiles a grammar in a throwaway grammar engine, to find out whether it can be used and what it would hold. */
  | { kind: 'grammar'; spec: GrammarSpec }
  /** Compiles a validator for a JSON schema (JSON text), to find out whether it is one. */
  | { kind: 'schema'; schema: string }
  /** Whether the JSON text `value` is JSON, and matches `schema` when there is one. */
  | { kind: 'validate'; schema?: string; value: string };

/** How to render a conversation (see RenderOptions) and tokenize it. */
export interface ChatRenderOptions extends RenderOptions {
  /** Default false, as Hugging Face's apply_chat_template: the template writes the BOS if the model has one. */
  addSpecialTokens?: boolean;
}

/** A rendered conversation too long for the context, found without tokenizing it. */
export interface TooLong {
  atLeastTokens: number;
  characters: number;
}

export type PreprocessResult =
  | { ids: number[] }
  | { text: string }
  | { tooLong: TooLong }
  | { templateError: string }
  /** The grammar compiled; what it is estimated to hold. */
  | { grammarBytes: number }
  | { grammarError: string }
  | { schemaChecked: true }
  | { schemaError: string }
  /** Why the value does not match (null: it does). */
  | { mismatch: string | null }
  /** The request's own input could not be handed to the worker. */
  | { inputError: string }
  /** The request was gone before its task ran. */
  | { aborted: true }
  | { error: string };

export interface ToPreprocessWorker {
  id: number;
  task: PreprocessTask;
}

export type FromPreprocessWorker =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  /** The chat template of task `id` has rendered; what remains is tokenizing. */
  | { type: 'rendered'; id: number }
  | { type: 'done'; id: number; result: PreprocessResult };
