import { parentPort } from 'node:worker_threads';
import type { SchemaChecker } from '../grammar/schema-checker.js';
import type { GrammarProbe } from '../grammar/xgrammar.js';
import { ChatTemplate, ChatTemplateError } from '../model/chat-template.js';
import { TextTokenizer } from '../model/tokenizer.js';
import { workerInput } from '../util/threads.js';
import type { FromPreprocessWorker, PreprocessResult, PreprocessTask, PreprocessWorkerData, ToPreprocessWorker } from './protocol.js';

/**
 * A preprocessing thread: tokenizes prompts and renders chat templates (role `text`), checks
 * schemas and their grammars in a throwaway grammar engine (role `grammar`), or checks finished
 * replies against their schemas (role `replies`), so that neither a long prompt, a template that
 * runs away, a slow or broken grammar nor a regular expression that backtracks holds up the HTTP
 * thread.
 */

const port = parentPort!;
const send = (message: FromPreprocessWorker) => port.postMessage(message);

/** The grammar and schema modules, loaded only by the workers that check them (ajv alone takes about half a second to load). */
const grammarModules = async () => ({ ...(await import('../grammar/schema-checker.js')), ...(await import('../grammar/xgrammar.js')) });
type GrammarModules = Awaited<ReturnType<typeof grammarModules>>;

async function checkGrammar({ InvalidSchemaError, GrammarError }: GrammarModules, probe: GrammarProbe, checker: SchemaChecker, task: PreprocessTask): Promise<PreprocessResult> {
  if (task.kind === 'schema') {
    try {
      checker.validator(task.schema);
      return { schemaChecked: true };
    } catch (err) {
      if (err instanceof InvalidSchemaError) return { schemaError: err.message };
      throw err;
    }
  }
  if (task.kind !== 'grammar') throw new Error(`no ${task.kind} tasks in this worker`);
  try {
    return { grammarBytes: await probe.check(task.spec) };
  } catch (err) {
    if (err instanceof GrammarError) return { grammarError: err.message };
    throw err;
  }
}

/** A finished reply checked against its schema: what the grammar does not enforce (see docs/structured-output.md). */
function checkReply(checker: SchemaChecker, task: PreprocessTask): PreprocessResult {
  if (task.kind !== 'validate') throw new Error(`no ${task.kind} tasks in this worker`);
  let value: unknown;
  try {
    value = JSON.parse(task.value);
  } catch {
    return { mismatch: 'it is not JSON' };
  }
  return { mismatch: task.schema === undefined ? null : (checker.mismatch(task.schema, value) ?? null) };
}

function run(id: number, task: PreprocessTask, tokenizer: TextTokenizer, template: ChatTemplate): PreprocessResult {
  if (task.kind !== 'encode' && task.kind !== 'decode' && task.kind !== 'chat') throw new Error(`no ${task.kind} tasks in this worker`);
  if (task.kind === 'encode') return { ids: tokenizer.encode(task.text, task.addSpecialTokens) };
  if (task.kind === 'decode') return { text: tokenizer.decode(task.ids, task.skipSpecialTokens) };
  let text: string;
  try {
    text = template.render(task.messages, task.tools, task.options);
  } catch (err) {
    if (err instanceof ChatTemplateError) return { templateError: err.message };
    throw err;
  }
  send({ type: 'rendered', id });
  const atLeastTokens = tokenizer.minimumTokens(text);
  if (atLeastTokens >= task.contextLength) return { tooLong: { atLeastTokens, characters: text.length } };
  // As Hugging Face's apply_chat_template: the rendered text is tokenized without special tokens.
  return { ids: tokenizer.encode(text, task.options?.addSpecialTokens ?? false) };
}

try {
  const data = workerInput<PreprocessWorkerData>();
  let work: (id: number, task: PreprocessTask) => Promise<PreprocessResult>;
  if (data.role === 'text') {
    const tokenizer = new TextTokenizer(data);
    const template = new ChatTemplate(data.tokenizerConfig, tokenizer);
    work = async (id, task) => run(id, task, tokenizer, template);
  } else if (data.role === 'grammar') {
    const modules = await grammarModules();
    const probe = new modules.GrammarProbe(data.grammarVocabulary);
    const checker = new modules.SchemaChecker();
    work = (_, task) => checkGrammar(modules, probe, checker, task);
  } else {
    const { SchemaChecker: Checker } = await import('../grammar/schema-checker.js');
    const checker = new Checker();
    work = async (_, task) => checkReply(checker, task);
  }
  // One task at a time: the client sends the next one when this one is done.
  port.on('message', ({ id, task }: ToPreprocessWorker) => {
    work(id, task).then(
      (result) => send({ type: 'done', id, result }),
      (err: unknown) => send({ type: 'done', id, result: { error: (err as Error).message } }),
    );
  });
  send({ type: 'ready' });
} catch (err) {
  send({ type: 'failed', message: (err as Error).message });
}
