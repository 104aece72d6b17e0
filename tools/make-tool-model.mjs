#!/usr/bin/env node
// Writes test/fixtures/models/tiny-llama-tools: the tiny-llama test model (Llama architecture,
// random weights) with a Hermes-style chat template that renders tools, tool calls and tool
// results, as Qwen 2.5 and Hermes models do, and a context of 2048 (its rotary positions have no
// table, and tool prompts are long in a 2,304-token vocabulary). Run from the repository root:
// node tools/make-tool-model.mjs
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const source = 'test/fixtures/models/tiny-llama';
const target = 'test/fixtures/models/tiny-llama-tools';

const template = [
  "{%- if tools %}",
  "{{- '<|system|>\\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}",
  "{{- '# Tools\\n<tools>' }}",
  "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}",
  "{{- '\\n</tools>\\nCall as <tool_call>\\n{\"name\": ..., \"arguments\": ...}\\n</tool_call>' + eos_token + '\\n' }}",
  "{%- elif messages[0]['role'] == 'system' %}{{- '<|system|>\\n' + messages[0]['content'] + eos_token + '\\n' }}",
  "{%- endif %}",
  "{%- for message in messages %}",
  "{%- if message.role == 'user' %}{{- '<|user|>\\n' + message.content + eos_token + '\\n' }}",
  "{%- elif message.role == 'assistant' %}{{- '<|assistant|>\\n' }}{%- if message.content %}{{- message.content }}{%- endif %}",
  "{%- if message.tool_calls %}{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}",
  "{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' + (tool_call.arguments | tojson) + '}\\n</tool_call>' }}",
  "{%- endfor %}{%- endif %}{{- eos_token + '\\n' }}",
  "{%- elif message.role == 'tool' %}{{- '<|user|>\\n<tool_response>\\n' + message.content + '\\n</tool_response>' + eos_token + '\\n' }}",
  "{%- endif %}",
  "{%- endfor %}",
  "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}",
].join('');

mkdirSync(target, { recursive: true });
for (const file of readdirSync(source)) {
  if (file !== 'tokenizer_config.json' && file !== 'config.json') copyFileSync(join(source, file), join(target, file));
}
const modelConfig = JSON.parse(readFileSync(join(source, 'config.json'), 'utf8'));
modelConfig.max_position_embeddings = 2048;
writeFileSync(join(target, 'config.json'), `${JSON.stringify(modelConfig, null, 2)}\n`);
const config = JSON.parse(readFileSync(join(source, 'tokenizer_config.json'), 'utf8'));
config.chat_template = template;
writeFileSync(join(target, 'tokenizer_config.json'), `${JSON.stringify(config, null, 2)}\n`);
console.log(`wrote ${target}`);
