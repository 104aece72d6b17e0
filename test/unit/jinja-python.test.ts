import { describe, expect, it } from '@jest/globals';
import { templateArguments } from '../../src/model/chat-template.js';
import { Template } from '../../src/model/jinja/index.js';
import { pythonFloat, pythonStringRepr } from '../../src/model/jinja/python.js';

const render = (source: string, variables: Record<string, unknown> = {}) => new Template(source).render(variables);

describe('the template renderer prints values as Python prints them', () => {
  it.each([
    [2, '2.0'],
    [1e-7, '1e-07'],
    [1e16, '1e+16'],
    [123456789012345680000, '1.2345678901234568e+20'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [-1.5, '-1.5'],
    [1 / 3, '0.3333333333333333'],
    [12345.678, '12345.678'],
    [1e22, '1e+22'],
    [5e-324, '5e-324'],
    [-0, '-0.0'],
  ])('the float %p as %p', (value, text) => {
    expect(pythonFloat(value)).toBe(text);
  });

  it('quotes strings as repr() does', () => {
    expect(pythonStringRepr('plain')).toBe("'plain'");
    expect(pythonStringRepr("it's")).toBe('"it\'s"');
    expect(pythonStringRepr('both \' and "')).toBe("'both \\' and \"'");
    expect(pythonStringRepr('line\nbreak\ttab\u0001')).toBe("'line\\nbreak\\ttab\\x01'");
    expect(pythonStringRepr('café')).toBe("'café'");
  });

  it('writes booleans, None, floats, lists, tuples and dicts as jinja2 does', () => {
    expect(render("{{ true }} {{ none }} {{ 2.0 }} {{ [1, 'a', none, (1, 2)] }} {{ {'a': true, 'b': \"it's\"} }}")).toBe(
      "True None 2.0 [1, 'a', None, (1, 2)] {'a': True, 'b': \"it's\"}",
    );
    expect(render('{{ 10 / 4 }} {{ 2 ** 70 }}')).toBe('2.5 1180591620717411303424');
  });

  it("takes Python's str() for |string and ~, and an undefined value as empty text", () => {
    expect(render("{{ {'x': 1.5}|string }}|{{ nope|trim }}|{{ none ~ 'a' }}|{{ [true]|string }}")).toBe("{'x': 1.5}||Nonea|[True]");
  });

  it('refuses + between a string and anything else, as Python does', () => {
    expect(() => render("{{ 'a' + 1 }}")).toThrow('can only concatenate str (not "int") to str');
    expect(() => render("{{ 'a' + x }}", { x: { k: 1 } })).toThrow('can only concatenate str (not "dict") to str');
  });
});

describe("an earlier tool call's arguments", () => {
  const text = '{"id": 12345678901234567890, "ratio": 2.0, "eps": 1e-07, "name": "caf\\u00e9", "nested": {"n": 2.50}}';

  it('keep every number through tojson and iteration', () => {
    const args = templateArguments(text);
    expect(render('{{ args|tojson }}', { args })).toBe('{"id": 12345678901234567890, "ratio": 2.0, "eps": 1e-07, "name": "café", "nested": {"n": 2.5}}');
    expect(render('{% for key, value in args.items() %}{{ key }}={{ value }};{% endfor %}', { args })).toBe(
      "id=12345678901234567890;ratio=2.0;eps=1e-07;name=café;nested={'n': 2.5};",
    );
  });

  it("are the client's own text where the template prints them or joins them to a string", () => {
    const args = templateArguments(text);
    expect(render('{{ args }}', { args })).toBe(text);
    expect(render("{{ '<' + args + '>' }}|{{ args|string }}|{{ 'x' ~ args }}", { args })).toBe(`<${text}>|${text}|x${text}`);
    expect(render('{{ args is string }} {{ args is mapping }}', { args })).toBe('False True');
  });

  it('stay text where they are not JSON', () => {
    expect(templateArguments('not json {')).toBe('not json {');
    expect(render('{{ args is string }}', { args: templateArguments('not json {') })).toBe('True');
  });
});
