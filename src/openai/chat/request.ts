import type { RequestLimits } from '../../options.js';
import { catalogueError, invalidRequest } from '../../errors.js';
import { CHAT_FIELDS, type GenerationRequest, type OutputRequest } from '../../generation/request.js';
import { checkStreamOptions, given, samplingFields, stopFields, streamFields, unsupported } from '../common-fields.js';
import type { ChatCompletionRequest } from '../schemas.js';
import { templateKwargs, templateMessage } from './messages.js';

/** Fields of OpenAI's chat API that this server cannot honour: refused rather than ignored. */
function refuseUnsupported(body: ChatCompletionRequest): void {
  for (const field of ['functions', 'function_call', 'audio'] as const) {
    if (body[field] !== undefined && body[field] !== null) throw unsupported(field);
  }
  if (body.top_logprobs !== null && body.top_logprobs !== undefined && !body.logprobs) {
    throw invalidRequest("'top_logprobs' requires 'logprobs' to be true.", 'top_logprobs', 'invalid_value');
  }
}

/** `response_format`, `tools`, `tool_choice` and `parallel_tool_calls`. */
function outputRequest(body: ChatCompletionRequest): OutputRequest {
  if (body.tools && body.tools.length === 0) {
    throw catalogueError('empty_array', ['tools'], 'tools');
  }
  const format = given(body.response_format);
  const choice = given(body.tool_choice);
  return {
    ...(format && { responseFormat: format.type === 'json_schema' ? { type: 'json_schema', ...(format.json_schema.schema && { schema: format.json_schema.schema }) } : { type: format.type } }),
    ...(body.tools && {
      tools: body.tools.map(({ function: fn }) => ({ name: fn.name, ...(fn.description !== undefined && { description: fn.description }), ...(fn.parameters && { parameters: fn.parameters }) })),
    }),
    ...(choice !== undefined && { toolChoice: typeof choice === 'string' ? choice : { name: choice.function.name } }),
    ...(given(body.parallel_tool_calls) !== undefined && { parallelToolCalls: body.parallel_tool_calls! }),
  };
}

/** `POST /v1/chat/completions` as a generation request. */
export function chatRequest(body: ChatCompletionRequest, limits: RequestLimits): GenerationRequest {
  refuseUnsupported(body);
  checkStreamOptions(body);
  const useCompletionTokens = given(body.max_completion_tokens) !== undefined;
  const maxTokens = given(useCompletionTokens ? body.max_completion_tokens : body.max_tokens);
  const messages = body.messages.map((message, index) => templateMessage(message, index, limits.maxJsonDepth));
  // reasoning_effort reaches the template as a variable; chat_template_kwargs may set it too, and win.
  const effort = given(body.reasoning_effort);
  const kwargs = templateKwargs(effort === undefined ? body.chat_template_kwargs : { reasoning_effort: effort, ...body.chat_template_kwargs });
  const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : undefined;
  return {
    model: body.model,
    prompts: { kind: 'chat', messages, ...(kwargs && { templateKwargs: kwargs }) },
    choices: { ...(given(body.n) !== undefined && { n: body.n! }) },
    sampling: samplingFields(body),
    // OpenAI's chat default: what the context leaves.
    stopping: { ...(maxTokens !== undefined && { maxTokens }), stop: stopFields(body) },
    reporting: { ...(logprobs !== undefined && { logprobs }), echo: false, ...streamFields(body) },
    output: outputRequest(body),
    fields: { ...CHAT_FIELDS, maxTokens: useCompletionTokens ? 'max_completion_tokens' : 'max_tokens' },
  };
}
