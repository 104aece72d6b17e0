import { createHash } from 'node:crypto';
import type { GrammarSpec } from '../grammar/grammar-spec.js';
import { GrammarError } from '../grammar/xgrammar.js';
import { defaultValue, FIXED_LIMITS } from '../options.js';
import { LruCache } from '../util/lru.js';
import { ChatTemplateError, type ChatMessage, type ChatTools } from '../model/chat-template.js';
import type { ChatRenderOptions, PreprocessData, PreprocessResult, PreprocessTask, TooLong } from './protocol.js';
import { WorkerLane, type Job, type TaskOwner } from './worker-lane.js';

export type { TaskOwner } from './worker-lane.js';

export interface PreprocessorOptions {
  /** How long a chat template may take to render before its worker is stopped. */
  renderLimitMs: number;
  /** The worker's heap; a template that builds more than this fails alone instead of the server. */
  heapLimitMb: number;
  /**
   * How long a grammar (a response_format schema, the tools' parameters) may take to compile before
   * it is refused. The engine compiles it again at the same cost, holding up the running streams:
   * this bounds that stall. Also the bound on compiling a schema's validator.
   */
  grammarLimitMs: number;
  /** Memory a grammar may be estimated to hold (what the engine keeps of each); a larger one is refused. */
  grammarBudgetBytes: number;
  /** How long checking a finished reply against its schema may take before it is given up. */
  replyCheckLimitMs: number;
}

export const DEFAULT_PREPROCESSOR_OPTIONS: PreprocessorOptions = {
  renderLimitMs: FIXED_LIMITS.templateRenderMs.value,
  heapLimitMb: FIXED_LIMITS.workerHeapMb.value,
  grammarLimitMs: defaultValue('grammar-compile-limit'),
  grammarBudgetBytes: defaultValue('grammar-cache-mb'),
  replyCheckLimitMs: FIXED_LIMITS.replyCheckMs.value,
};

/** Checked grammars and schemas remembered (by digest), so that one sent again is not checked again. */
const CHECKED = FIXED_LIMITS.rememberedChecks.value;

const ANONYMOUS: TaskOwner = { client: '' };

/** The prompt of a chat request: its token ids, or how much too long it is. */
export type ChatPrompt = { ids: number[] } | { tooLong: TooLong };

const digest = (text: string) => createHash('sha256').update(text).digest('base64');

/** A result that is not the one asked for, as the error the caller throws. */
function unexpected(result: PreprocessResult, owner: TaskOwner, what: string): unknown {
  if ('aborted' in result) return owner.signal?.reason ?? new Error('the request was abandoned while it was being prepared');
  if ('inputError' in result) return new PreprocessInputError(`The request could not be prepared: ${result.inputError}.`);
  return new Error(`${what} failed: ${'error' in result ? result.error : 'no result'}`);
}

/** A request's own input could not be prepared (it could not be copied to a worker, say). */
export class PreprocessInputError extends Error {
  override readonly name = 'PreprocessInputError';
}

/** A JSON schema that a validator cannot be compiled from. */
export class SchemaError extends Error {
  override readonly name = 'SchemaError';
}

/**
 * The main thread's handle on the preprocessing workers, which tokenize prompts, render chat
 * templates, check schemas and grammars, and check finished replies against their schemas, all off
 * the HTTP thread. Tokenizing and templates share one worker; grammars and schemas have one of their
 * own (so that a slow compile never holds up tokenizing), and so does checking replies (so that a
 * slow check never holds up a new request's schema). In each, clients take turns a task at a time.
 * A task that runs for longer than its limit, or that runs out of the worker's heap, fails its own
 * request; the worker is replaced and the other requests carry on.
 */
export class Preprocessor {
  private readonly checkedGrammars = new LruCache<string, true>(CHECKED);
  private readonly checkedSchemas = new LruCache<string, true>(CHECKED);

  private constructor(
    private readonly text: WorkerLane,
    private readonly grammars: WorkerLane,
    private readonly replies: WorkerLane,
    private readonly options: PreprocessorOptions,
  ) {}

  static async start(data: PreprocessData, options: PreprocessorOptions = DEFAULT_PREPROCESSOR_OPTIONS): Promise<Preprocessor> {
    const preprocessor = new Preprocessor(
      new WorkerLane('preprocessing worker', { role: 'text', tokenizerJson: data.tokenizerJson, tokenizerConfig: data.tokenizerConfig }, options.heapLimitMb, (task) =>
        task.kind === 'chat' ? { ms: options.renderLimitMs, result: (seconds) => ({ templateError: `it did not finish rendering within ${seconds} s` }) } : undefined,
      ),
      new WorkerLane('grammar-checking worker', Promise.resolve(data.grammarVocabulary).then((grammarVocabulary) => ({ role: 'grammar', grammarVocabulary })), options.heapLimitMb, (task) => {
        if (task.kind === 'grammar') return { ms: options.grammarLimitMs, result: (seconds) => ({ grammarError: `its grammar did not compile within this server's limit of ${seconds} s` }) };
        if (task.kind === 'schema') return { ms: options.grammarLimitMs, result: (seconds) => ({ schemaError: `its validator did not compile within this server's limit of ${seconds} s` }) };
        return undefined;
      }),
      new WorkerLane('reply-checking worker', { role: 'replies' }, options.heapLimitMb, () => ({
        ms: options.replyCheckLimitMs,
        result: (seconds) => ({ error: `checking it took longer than this server's limit of ${seconds} s` }),
      })),
      options,
    );
    await preprocessor.text.start();
    return preprocessor;
  }

  /**
   * Token ids of each text, in order. `check` sees each text's ids as soon as they are ready and may
   * throw: then the request's other texts are not tokenized and the promise rejects with its error.
   */
  encode(texts: readonly string[], addSpecialTokens: boolean, check: (ids: number[], index: number) => void = () => {}, owner: TaskOwner = ANONYMOUS): Promise<number[][]> {
    if (texts.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const results: number[][] = new Array(texts.length);
      let remaining = texts.length;
      let failed = false;
      const job: Job = { items: [], owner };
      const fail = (err: unknown) => {
        job.items.length = 0;
        failed = true;
        reject(err);
      };
      job.items = texts.map((text, index) => ({
        task: { kind: 'encode', text, addSpecialTokens },
        done: (result) => {
          if (failed) return;
          if (!('ids' in result)) return fail(unexpected(result, owner, 'tokenizing'));
          try {
            check(result.ids, index);
          } catch (err) {
            return fail(err);
          }
          results[index] = result.ids;
          if (--remaining === 0) resolve(results);
        },
      }));
      this.text.enqueue(job);
    });
  }

  /** The result of one task in `lane`. */
  private run(lane: WorkerLane, task: PreprocessTask, owner: TaskOwner): Promise<PreprocessResult> {
    return new Promise((done) => lane.enqueue({ items: [{ task, done }], owner }));
  }

  /**
   * Resolves when a validator can be compiled from `schema` (JSON text); rejects with a SchemaError
   * saying why not.
   */
  async checkSchema(schema: string, owner: TaskOwner = ANONYMOUS): Promise<void> {
    const key = digest(schema);
    if (this.checkedSchemas.get(key)) return;
    const result = await this.run(this.grammars, { kind: 'schema', schema }, owner);
    if ('schemaError' in result) throw new SchemaError(result.schemaError);
    if (!('schemaChecked' in result)) throw unexpected(result, owner, 'checking the schema');
    this.checkedSchemas.set(key, true);
  }

  /**
   * Resolves when `spec` can be used by the engine; rejects with a GrammarError saying why not (its
   * text is the grammar engine's, or that compiling took longer than `grammarLimitMs`, or that the
   * grammar would hold more memory than the engine keeps for grammars).
   */
  async checkGrammar(spec: GrammarSpec, owner: TaskOwner = ANONYMOUS): Promise<void> {
    const key = digest(JSON.stringify(spec));
    if (this.checkedGrammars.get(key)) return;
    const result = await this.run(this.grammars, { kind: 'grammar', spec }, owner);
    if ('grammarError' in result) throw new GrammarError(result.grammarError);
    if (!('grammarBytes' in result)) throw unexpected(result, owner, 'checking the grammar');
    const budget = this.options.grammarBudgetBytes;
    if (result.grammarBytes > budget) {
      const mb = (bytes: number) => Math.ceil(bytes / (1024 * 1024));
      throw new GrammarError(`its grammar would hold about ${mb(result.grammarBytes)} MiB, more than this server keeps for grammars (${mb(budget)} MiB, set by --grammar-cache-mb)`);
    }
    this.checkedGrammars.set(key, true);
  }

  /**
   * Why the JSON text `value` does not match `schema` (JSON text): undefined when it does, or a
   * sentence saying so. Rejects when the check could not be made in time.
   */
  async replyMismatch(schema: string | undefined, value: string, owner: TaskOwner = ANONYMOUS): Promise<string | undefined> {
    const result = await this.run(this.replies, { kind: 'validate', ...(schema !== undefined && { schema }), value }, owner);
    if (!('mismatch' in result)) throw unexpected(result, owner, 'checking the reply');
    return result.mismatch ?? undefined;
  }

  /** Renders the conversation (and the tools it may call) with the model's chat template and tokenizes it. */
  async chat(messages: readonly ChatMessage[], contextLength: number, tools?: ChatTools, options?: ChatRenderOptions, owner: TaskOwner = ANONYMOUS): Promise<ChatPrompt> {
    const result = await this.run(this.text, { kind: 'chat', messages: [...messages], ...(tools && { tools }), contextLength, ...(options && { options }) }, owner);
    if ('templateError' in result) throw new ChatTemplateError(result.templateError);
    if ('ids' in result || 'tooLong' in result) return result;
    throw unexpected(result, owner, 'tokenizing');
  }

  /** The text of token ids, decoded off the HTTP thread. */
  async decode(ids: readonly number[], skipSpecialTokens: boolean, owner: TaskOwner = ANONYMOUS): Promise<string> {
    const result = await this.run(this.text, { kind: 'decode', ids: [...ids], skipSpecialTokens }, owner);
    if ('text' in result) return result.text;
    throw unexpected(result, owner, 'decoding');
  }

  /** Stops the workers; requests still waiting fail. */
  async close(): Promise<void> {
    await Promise.all([this.text.close(), this.grammars.close(), this.replies.close()]);
  }
}
