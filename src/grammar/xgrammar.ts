import { readFileSync } from 'node:fs';
import { createRequire, Module } from 'node:module';
import type { CompiledGrammar, GrammarCompiler, GrammarMatcher } from '@mlc-ai/web-xgrammar';
import type { GrammarSpec } from './grammar-spec.js';
import type { GrammarVocabulary } from './vocabulary.js';

/**
 * The one module that knows the grammar engine, xgrammar compiled to WebAssembly
 * (@mlc-ai/web-xgrammar). Everything else sees GrammarSpec, compiled grammars and TokenMatcher, so
 * another engine can take its place here.
 *
 * What this build needs handled, all seen with 0.1.27:
 * - Its bundle is UMD in a `"type": "module"` package, so it is loaded as CommonJS; each load is an
 *   independent WebAssembly instance.
 * - Bad input ends in a WebAssembly abort(), after which the instance is unusable (and after some
 *   dozens of them, hangs): user grammars are tried in a GrammarProbe first, whose instance is
 *   thrown away after any failure, and never reach the engine's instance unchecked.
 * - Its own compile cache misbehaves after aborts: it is off; the engine keeps its own.
 */

type XGrammar = typeof import('@mlc-ai/web-xgrammar');

interface Instance {
  xgrammar: XGrammar;
  /** What the engine wrote on stderr since the last call to `takeMessages` (its `[FATAL] …` lines). */
  takeMessages(): string;
}

const require = createRequire(import.meta.url);
const BUNDLE = require.resolve('@mlc-ai/web-xgrammar');
/** The place in the bundle that creates the WebAssembly module, given an output channel of ours. */
const MODULE_CREATION = 'binding = await Module();';

let bundleSource: string | undefined;

function loadInstance(): Instance {
  bundleSource ??= readFileSync(BUNDLE, 'utf8');
  if (!bundleSource.includes(MODULE_CREATION)) throw new Error(`${BUNDLE}: not the build of @mlc-ai/web-xgrammar this server was written for`);
  let messages: string[] = [];
  const hooks = {
    print: () => {},
    printErr: (line: string) => {
      if (messages.length < 20) messages.push(line);
    },
  };
  const source = bundleSource.replace(MODULE_CREATION, 'binding = await Module(globalThis.__ortserveXGrammarHooks);');
  const loaded = new Module(BUNDLE) as Module & { _compile(source: string, filename: string): void };
  loaded.filename = BUNDLE;
  loaded.paths = (Module as unknown as { _nodeModulePaths(path: string): string[] })._nodeModulePaths(BUNDLE);
  const global = globalThis as { __ortserveXGrammarHooks?: unknown };
  global.__ortserveXGrammarHooks = hooks;
  loaded._compile(source, BUNDLE);
  return {
    xgrammar: loaded.exports as XGrammar,
    takeMessages: () => {
      const text = messages
        .map((line) => line.replace(/^\[[^\]]*\]\s*/, '').replace(/^.*?\.cc:\d+:\s*/, ''))
        .join(' ')
        .replace(/\s*Aborted\(\)\s*$/, '')
        .trim();
      messages = [];
      return text;
    },
  };
}

/** The grammar engine refused a grammar: a bad schema, say. */
export class GrammarError extends Error {
  override readonly name = 'GrammarError';
}

/** Runs `work` on an instance; an abort becomes a GrammarError with what the engine printed. */
async function guarded<T>(instance: Instance, work: () => Promise<T>): Promise<T> {
  instance.takeMessages();
  try {
    return await work();
  } catch (err) {
    // WebAssembly exceptions arrive as bare numbers, aborts as RuntimeError('Aborted()'): neither says much.
    const message = err instanceof Error ? err.message : '';
    const detail = instance.takeMessages() || (message && message !== 'Aborted()' ? message : 'the grammar engine refused it without saying why');
    throw new GrammarError(detail);
  }
}

/**
 * JSON is written compactly, as `JSON.stringify` would with `, ` and `: ` between items: a grammar
 * that allows any whitespace lets a weak model write spaces until it runs out of tokens.
 */
const COMPACT: [anyWhitespace: boolean, indent: number, separators: [string, string]] = [false, -1, [', ', ': ']];

/**
 * Strings with a length bound come out of this build as `[^"\\\r\n]` repeated, which lets control
 * characters through (invalid JSON): they are held to the characters JSON strings allow unescaped.
 */
const BOUNDED_STRING_CHARACTER = '[^\\"\\\\\\r\\n]';
const JSON_STRING_CHARACTER = '[^\\0-\\x1f\\"\\\\\\r\\n]';

/** The EBNF of a JSON schema, written compactly. */
async function schemaEbnf(xgrammar: XGrammar, schema: string): Promise<string> {
  const grammar = await xgrammar.Grammar.fromJSONSchema(schema, ...COMPACT);
  const text = grammar.toString();
  grammar.dispose();
  return text.replaceAll(BOUNDED_STRING_CHARACTER, JSON_STRING_CHARACTER);
}

/** A structural tag whose JSON schema parts are replaced by their compact EBNF (structural tags have no whitespace setting of their own). */
async function compactStructuralTag(xgrammar: XGrammar, tag: string): Promise<string> {
  const resolve = async (node: unknown): Promise<unknown> => {
    // One at a time: a fresh instance registers its bindings on first use, and two first uses at
    // once fail ("Cannot register public name … twice").
    if (Array.isArray(node)) {
      const items: unknown[] = [];
      for (const item of node) items.push(await resolve(item));
      return items;
    }
    if (typeof node !== 'object' || node === null) return node;
    const record = node as Record<string, unknown>;
    if (record.type === 'json_schema' && 'json_schema' in record) return { type: 'grammar', grammar: await schemaEbnf(xgrammar, JSON.stringify(record.json_schema)) };
    const entries: [string, unknown][] = [];
    for (const [key, value] of Object.entries(record)) entries.push([key, await resolve(value)]);
    return Object.fromEntries(entries);
  };
  return JSON.stringify(await resolve(JSON.parse(tag)));
}

/** The grammar of `spec`, before it is compiled for a vocabulary. */
async function buildSpec(xgrammar: XGrammar, spec: GrammarSpec) {
  if (spec.kind === 'json_schema') return xgrammar.Grammar.fromEBNF(await schemaEbnf(xgrammar, spec.schema));
  return xgrammar.Grammar.fromStructuralTag(await compactStructuralTag(xgrammar, spec.tag));
}

/**
 * The memory a compiled grammar holds, estimated from the length of its EBNF: the compiled form
 * keeps a token mask per grammar position, so it grows with the grammar's text. Measured with this
 * build: a 60,000-value enum (about 1.9 MB of EBNF) held 110–180 MB; small schemas a few hundred KB.
 */
export const grammarFootprint = (ebnfCharacters: number) => 256 * 1024 + ebnfCharacters * EBNF_BYTE_COST;
const EBNF_BYTE_COST = 96;

/** A compiled grammar's state for one sequence: which tokens may come next. */
export interface TokenMatcher {
  /** Bit j of word j>>5 is set when token j may come next. */
  nextTokenMask(): Promise<Int32Array>;
  /** The sequence took `tokenId`; false when the grammar does not allow it. */
  accept(tokenId: number): boolean;
  dispose(): void;
}

class XGrammarMatcher implements TokenMatcher {
  constructor(private readonly matcher: GrammarMatcher) {}
  nextTokenMask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }
  accept(tokenId: number): boolean {
    return this.matcher.acceptToken(tokenId);
  }
  dispose(): void {
    this.matcher.dispose();
  }
}

/**
 * A grammar thread's grammars: compiles specs for the model's vocabulary under keys its owner
 * chooses (and forgets), and makes a matcher per sequence. Specs must have passed a GrammarProbe.
 */
export class GrammarEngine {
  private instance!: Instance;
  private compiler!: GrammarCompiler;
  private readonly compiled = new Map<string, { grammar: CompiledGrammar; bytes: number }>();

  private constructor(private readonly vocabulary: GrammarVocabulary) {}

  static async start(vocabulary: GrammarVocabulary): Promise<GrammarEngine> {
    const engine = new GrammarEngine(vocabulary);
    await engine.reload();
    return engine;
  }

  /**
   * Compiles `spec` under `key`, resolving with the memory it is estimated to hold (see
   * `grammarFootprint`); a GrammarError says why it could not be.
   */
  async compile(key: string, spec: GrammarSpec): Promise<number> {
    const held = this.compiled.get(key);
    if (held) return held.bytes;
    try {
      const grammar = await guarded(this.instance, () => buildSpec(this.instance.xgrammar, spec));
      try {
        const bytes = grammarFootprint(grammar.toString().length);
        this.compiled.set(key, { grammar: await guarded(this.instance, () => this.compiler.compileGrammar(grammar)), bytes });
        return bytes;
      } finally {
        grammar.dispose();
      }
    } catch (err) {
      // An instance that aborted cannot be trusted with the next grammar.
      await this.reload();
      throw err;
    }
  }

  /** Drops a compiled grammar; matchers made from it keep working. */
  forget(key: string): void {
    this.compiled.get(key)?.grammar.dispose();
    this.compiled.delete(key);
  }

  /** A matcher for one sequence under the grammar compiled as `key`; `stopTokenIds` end it. */
  async matcher(key: string, stopTokenIds: readonly number[]): Promise<TokenMatcher | undefined> {
    const compiled = this.compiled.get(key);
    if (!compiled) return undefined;
    return new XGrammarMatcher(await this.instance.xgrammar.GrammarMatcher.createGrammarMatcher(compiled.grammar, [...stopTokenIds]));
  }

  private async reload(): Promise<void> {
    for (const { grammar } of this.compiled.values()) grammar.dispose();
    this.compiled.clear();
    this.instance = loadInstance();
    this.compiler = await createCompiler(this.instance, this.vocabulary);
  }
}

async function createCompiler(instance: Instance, vocabulary: GrammarVocabulary): Promise<GrammarCompiler> {
  const { TokenizerInfo, GrammarCompiler } = instance.xgrammar;
  const info = await TokenizerInfo.createTokenizerInfo(vocabulary.tokens, vocabulary.kind, vocabulary.prependsSpace, vocabulary.tokens.length);
  return GrammarCompiler.createGrammarCompiler(info, false);
}

/**
 * Tries user grammars before the engine sees them: builds each one, then compiles it for the
 * model's vocabulary, in an instance of its own that is replaced after any failure. Slow to compile
 * means slow here too, so the caller can bound the time (by running the probe in a worker it can stop).
 */
export class GrammarProbe {
  private instance: Instance | undefined;
  private compiler: GrammarCompiler | undefined;

  constructor(private readonly vocabulary: GrammarVocabulary) {}

  /** Resolves when `spec` compiles, with the memory it is estimated to hold; rejects with a GrammarError saying why not. */
  async check(spec: GrammarSpec): Promise<number> {
    try {
      // Building the grammar alone finds most errors without the cost of the vocabulary.
      const instance = (this.instance ??= loadInstance());
      const grammar = await guarded(instance, () => buildSpec(instance.xgrammar, spec));
      try {
        const compiler = (this.compiler ??= await createCompiler(instance, this.vocabulary));
        const compiled = await guarded(instance, () => compiler.compileGrammar(grammar));
        compiled.dispose();
        return grammarFootprint(grammar.toString().length);
      } finally {
        grammar.dispose();
      }
    } catch (err) {
      this.instance = undefined;
      this.compiler = undefined;
      throw err instanceof GrammarError ? err : new GrammarError((err as Error).message);
    }
  }

  /** Whether the grammar of `spec` allows `text` as a whole output (what it enforces, found by trying). */
  async accepts(spec: GrammarSpec, text: string): Promise<boolean> {
    const instance = (this.instance ??= loadInstance());
    const grammar = await guarded(instance, () => buildSpec(instance.xgrammar, spec));
    try {
      return await instance.xgrammar.Testings.isGrammarAcceptString(grammar, text);
    } finally {
      grammar.dispose();
    }
  }
}
