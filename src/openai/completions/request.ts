import { invalidRequest } from '../../errors.js';
import { CHAT_FIELDS, type GenerationRequest, type PromptInput } from '../../generation/request.js';
import { checkStreamOptions, given, samplingFields, stopFields, streamFields } from '../common-fields.js';
import type { CompletionRequest } from '../schemas.js';

/** OpenAI's default for `max_tokens` on the legacy completions endpoint. */
const DEFAULT_MAX_TOKENS = 16;

/** The four forms of `prompt`: text, texts, token ids, lists of token ids. */
function promptInput(prompt: CompletionRequest['prompt']): PromptInput {
  if (typeof prompt === 'string') return { kind: 'texts', texts: [prompt] };
  if (prompt.every((item): item is string => typeof item === 'string')) return { kind: 'texts', texts: prompt };
  if (prompt.every((item): item is number => typeof item === 'number')) return { kind: 'token-ids', ids: [prompt] };
  return { kind: 'token-ids', ids: prompt as number[][] };
}

/** `POST /v1/completions` as a generation request. */
export function completionRequest(body: CompletionRequest): GenerationRequest {
  if (body.suffix) throw invalidRequest("'suffix' is not supported by this server.", 'suffix', 'unsupported_parameter');
  checkStreamOptions(body);
  if (body.max_tokens === 0 && !body.echo) {
    throw invalidRequest("'max_tokens' may be 0 only with 'echo', to score the prompt without generating.", 'max_tokens', 'invalid_value');
  }
  const n = given(body.n);
  const bestOf = given(body.best_of);
  if (body.stream && bestOf !== undefined && bestOf > (n ?? 1)) {
    throw invalidRequest("'best_of' greater than 'n' cannot be used with 'stream'.", 'best_of', 'unsupported_value');
  }
  const maxTokens = given(body.max_tokens);
  const logprobs = given(body.logprobs);
  return {
    model: body.model,
    prompts: promptInput(body.prompt),
    choices: { ...(n !== undefined && { n }), ...(bestOf !== undefined && { bestOf }) },
    sampling: samplingFields(body),
    stopping: { ...(maxTokens !== undefined && { maxTokens }), defaultMaxTokens: DEFAULT_MAX_TOKENS, stop: stopFields(body) },
    reporting: { ...(logprobs !== undefined && { logprobs }), echo: !!body.echo, ...streamFields(body) },
    output: {},
    fields: { ...CHAT_FIELDS, prompt: 'prompt' },
  };
}
