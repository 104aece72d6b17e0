import { parentPort } from 'node:worker_threads';
import { GrammarError, GrammarProbe } from '../grammar/xgrammar.js';
import { ChatTemplate, ChatTemplateError } from '../model/chat-template.js';
import { TextTokenizer } from '../model/tokenizer.js';
import { workerInput } from '../threads.js';
import type { FromPreprocessWorker, PreprocessResult, PreprocessTask, PreprocessWorkerData, ToPreprocessWorker } from './protocol.js';

/**
 * A preprocessing thread: tokenizes prompts and renders chat templates (role `text`), or checks
 * grammars in a throwaway grammar engine (role `grammar`), so that neither a long prompt, a
 * template that runs away nor a slow or broken grammar holds up the HTTP thread.
 */

const port = parentPort!;
const send = (message: FromPreprocessWorker) => port.postMessage(message);

async function checkGrammar(probe: GrammarProbe, task: Extract<PreprocessTask, { kind: 'grammar' }>): Promise<PreprocessResult> {
  try {
    await probe.check(task.spec);
    return { grammarChecked: true };
  } catch (err) {
    if (err instanceof GrammarError) return { grammarError: err.message };
    throw err;
  }
}

async function run(id: number, task: Exclude<PreprocessTask, { kind: 'grammar' }>, tokenizer: TextTokenizer, template: ChatTemplate): Promise<PreprocessResult> {
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
  const elsewhere = (task: PreprocessTask): Promise<PreprocessResult> => Promise.reject(new Error(`no ${task.kind} tasks in this worker`));
  let work: (id: number, task: PreprocessTask) => Promise<PreprocessResult>;
  if (data.role === 'text') {
    const tokenizer = new TextTokenizer(data);
    const template = new ChatTemplate(data.tokenizerConfig, tokenizer);
    work = (id, task) => (task.kind === 'grammar' ? elsewhere(task) : run(id, task, tokenizer, template));
  } else {
    const probe = new GrammarProbe(data.grammarVocabulary);
    work = (_, task) => (task.kind === 'grammar' ? checkGrammar(probe, task) : elsewhere(task));
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
