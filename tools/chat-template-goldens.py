#!/usr/bin/env python3
"""Regenerate test/fixtures/chat-templates/goldens.json.

Renders every template listed in templates.json against every conversation in
conversations.json with Python jinja2, the way Hugging Face transformers'
`tokenizer.apply_chat_template(..., tokenize=False)` renders a chat template,
and records the text (or the error) for each pair. Needs python3 and jinja2
(>= 3.1) only; run from anywhere:

    python3 tools/chat-template-goldens.py

Environment (transformers, src/transformers/utils/chat_template_utils.py,
`_compile_jinja_template`):

- `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
  extensions=[AssistantTracker, jinja2.ext.loopcontrols])`. transformers'
  AssistantTracker defines the `{% generation %}...{% endgeneration %}` tag
  and records where assistant text lands when a token mask is asked for;
  here the tag only renders its body, which is all a plain render sees.
- filter `tojson(x, ensure_ascii=False, indent=None, separators=None,
  sort_keys=False)` = `json.dumps` with those arguments (no HTML escaping,
  unlike jinja2's own `tojson`).
- global `raise_exception(message)` raises `jinja2.exceptions.TemplateError`.
- global `strftime_now(format)` formats a FIXED clock, 2024-07-26 12:00:00
  (naive, C locale), instead of `datetime.now()`, so goldens do not depend
  on the day they were made. The test that reads these goldens must give the
  renderer the same clock.

Variables passed to the template (transformers `render_jinja_template` and
`PreTrainedTokenizerBase.apply_chat_template`):

    compiled.render(messages=messages, tools=tools, documents=None,
                    add_generation_prompt=add_generation_prompt,
                    **{**special_tokens_map, **kwargs})

- `tools` is the conversation's `tools` list as given (an empty list stays
  an empty list), or None when the conversation has no `tools` key.
- `documents` is always None.
- transformers passes the tokenizer's whole `special_tokens_map`: only the
  special tokens the tokenizer actually sets (bos_token, eos_token,
  unk_token, sep_token, pad_token, cls_token, mask_token,
  additional_special_tokens), each as a string. A token the tokenizer leaves
  unset (Qwen's bos_token) is not passed at all, so it is *undefined* in the
  template, not "". This script passes `bos_token` and `eos_token` from
  templates.json, leaving out one given as "" (unset); none of the fixture
  templates reads the other special tokens.
- the conversation's `kwargs` (chat_template_kwargs) come last and win over
  the special tokens, as in transformers.
- `continue_final_message` and `return_assistant_tokens_mask` are not used.

Messages are converted from the OpenAI wire form the way the server does
before rendering (after vLLM's chat_utils):

- content: a string stays; an array of text parts becomes their texts
  joined with "\\n"; null or missing becomes "".
- role `developer` becomes `system`.
- `name` is kept when it is a string (any role).
- tool messages keep `tool_call_id`.
- assistant messages: every tool call's `function.arguments` string is
  parsed with `json.loads` when it parses (so 12345678901234567890 stays an
  exact int and 2.0 a float), and kept as the string when it does not; every
  other field (reasoning_content, unknown fields) is passed through as given.
  Arguments that parse to an object are a dict that also keeps the client's
  text (ClientArguments): a template that iterates them or writes them with
  `tojson` gets the parsed values, one that prints them (`{{ }}`, `|string`,
  `~`) or joins them to a string with `+` gets the client's own text, as a
  template written for string arguments expects.

Output: {"<template name>": {"<conversation name>": {"text": ...} or
{"error": "<ExceptionClass>: <message>"}}}, both levels in fixture order.
"""

import copy
import json
import sys
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "test" / "fixtures" / "chat-templates"
FIXED_NOW = datetime(2024, 7, 26, 12, 0, 0)


class GenerationTag(jinja2.ext.Extension):
    """`{% generation %}body{% endgeneration %}` renders as its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()


class ClientArguments(dict):
    """Parsed tool-call arguments that print, and join strings, as the text the client sent."""

    def __init__(self, parsed, text):
        super().__init__(parsed)
        self.text = text

    def __str__(self):
        return self.text

    def __add__(self, other):
        if isinstance(other, str):
            return self.text + other
        return NotImplemented

    def __radd__(self, other):
        if isinstance(other, str):
            return other + self.text
        return NotImplemented


def template_arguments(text):
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return ClientArguments(parsed, text) if isinstance(parsed, dict) else parsed


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return FIXED_NOW.strftime(format)


def compile_template(source):
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def content_text(content):
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content)


def template_message(message):
    role = message["role"]
    content = content_text(message.get("content"))
    if role == "assistant":
        out = {}
        for key, value in message.items():
            if key == "content":
                out[key] = content
            elif key == "name" and not isinstance(value, str):
                continue
            elif key == "tool_calls" and value is not None:
                calls = []
                for call in value:
                    call = copy.deepcopy(call)
                    args = call.get("function", {}).get("arguments")
                    if isinstance(args, str):
                        call["function"]["arguments"] = template_arguments(args)
                    calls.append(call)
                out[key] = calls
            else:
                out[key] = copy.deepcopy(value)
        out.setdefault("content", content)
        return out
    out = {"role": "system" if role == "developer" else role, "content": content}
    if isinstance(message.get("name"), str):
        out["name"] = message["name"]
    if role == "tool" and "tool_call_id" in message:
        out["tool_call_id"] = message["tool_call_id"]
    return out


def render(compiled, template, conversation):
    special_tokens = {
        key: template[key] for key in ("bos_token", "eos_token") if template.get(key)
    }
    variables = {**special_tokens, **conversation.get("kwargs", {})}
    tools = conversation.get("tools")
    return compiled.render(
        messages=[template_message(m) for m in conversation["messages"]],
        tools=copy.deepcopy(tools),
        documents=None,
        add_generation_prompt=conversation["add_generation_prompt"],
        **variables,
    )


def main():
    templates = json.loads((FIXTURES / "templates.json").read_text(encoding="utf-8"))
    conversations = json.loads((FIXTURES / "conversations.json").read_text(encoding="utf-8"))
    goldens = {}
    rendered = raised = 0
    for template in templates:
        # Read as bytes and decode without newline translation: the text is the file, byte for byte.
        source = (FIXTURES / template["file"]).read_bytes().decode("utf-8")
        try:
            compiled = compile_template(source)
            compile_error = None
        except Exception as exc:  # a template jinja2 cannot parse: every pair records the error
            compiled = None
            compile_error = f"{type(exc).__name__}: {exc}"
        results = {}
        for conversation in conversations:
            if compile_error is not None:
                results[conversation["name"]] = {"error": compile_error}
                raised += 1
                continue
            try:
                results[conversation["name"]] = {"text": render(compiled, template, conversation)}
                rendered += 1
            except Exception as exc:
                results[conversation["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
                raised += 1
        goldens[template["name"]] = results

    with open(FIXTURES / "goldens.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=1)
        f.write("\n")

    print(f"jinja2 {jinja2.__version__}: {len(templates)} templates x {len(conversations)} conversations")
    print(f"{rendered + raised} pairs: {rendered} rendered, {raised} raised")
    for name, results in goldens.items():
        errors = [conv for conv, result in results.items() if "error" in result]
        if errors:
            print(f"  {name}: raises on {', '.join(errors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
