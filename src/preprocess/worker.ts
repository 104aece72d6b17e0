import { parentPort } from 'node:worker_threads';
import { ChatTemplate, ChatTemplateError } from '../model/chat-template.js';
import { TextTokenizer } from '../model/tokenizer.js';
import { workerInput } from '../threads.js';
import type { FromPreprocessWorker, PreprocessData, PreprocessResult, PreprocessTask, ToPreprocessWorker } from './protocol.js';

/**
 * The preprocessing thread: tokenizes prompts and renders chat templates, so that neither a long
 * prompt nor a template that runs away holds up the HTTP thread.
 */

const port = parentPort!;
const send = (message: FromPreprocessWorker) => port.postMessage(message);

function run(id: number, task: PreprocessTask, tokenizer: TextTokenizer, template: ChatTemplate): PreprocessResult {
  if (task.kind === 'encode') return { ids: tokenizer.encode(task.text, task.addSpecialTokens) };
  let text: string;
  try {
    text = template.render(task.messages);
  } catch (err) {
    if (err instanceof ChatTemplateError) return { templateError: err.message };
    throw err;
  }
  send({ type: 'rendered', id });
  const atLeastTokens = tokenizer.minimumTokens(text);
  if (atLeastTokens >= task.contextLength) return { tooLong: { atLeastTokens, characters: text.length } };
  // A template that writes its own BOS gets no second one from the tokenizer.
  const { bosToken } = tokenizer;
  const templateWroteBos = bosToken !== undefined && bosToken !== '' && text.startsWith(bosToken);
  return { ids: tokenizer.encode(text, !templateWroteBos) };
}

try {
  const files = workerInput<PreprocessData>();
  const tokenizer = new TextTokenizer(files);
  const template = new ChatTemplate(files.tokenizerConfig, tokenizer);
  port.on('message', ({ id, task }: ToPreprocessWorker) => {
    let result: PreprocessResult;
    try {
      result = run(id, task, tokenizer, template);
    } catch (err) {
      result = { error: (err as Error).message };
    }
    send({ type: 'done', id, result });
  });
  send({ type: 'ready' });
} catch (err) {
  send({ type: 'failed', message: (err as Error).message });
}
