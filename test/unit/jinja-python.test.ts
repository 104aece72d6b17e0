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

describe('jinja2 features real templates use, against the text jinja2 3.1.6 renders', () => {
  it.each([
    ["{% set d = {1: 'a', 2: 'b'} %}{{ d[1] }}|{{ d }}|{{ d.items()|list }}|{{ 2 in d }}|{{ d.get(2) }}", "a|{1: 'a', 2: 'b'}|[(1, 'a'), (2, 'b')]|True|b"],
    ["{% set b = {0: 0, 512: 128, 1024: 256} %}{% for k, v in b.items() %}{% if k <= 600 %}{{ v }};{% endif %}{% endfor %}", "0;128;"],
    ["{{ '%s and %d'|format('x', 3) }}|{{ '%05.2f'|format(3.14159) }}|{{ '%-5s|'|format('ab') }}|{{ '%r'|format('q') }}", "x and 3|03.14|ab   ||'q'"],
    ["{{ '%s' % 5 }}|{{ '%s-%s' % (1, 2) }}|{{ '%(a)s!' % {'a': 'x'} }}|{{ '%x %o %e' % (255, 8, 12345.678) }}", "5|1-2|x!|ff 10 1.234568e+04"],
    ["{{ {'b': 1, 'a': 2}|dictsort }}|{{ {'b': 1}.items()|list }}|{{ {'b': 1}|items|list }}", "[('a', 2), ('b', 1)]|[('b', 1)]|[('b', 1)]"],
    ["{{ (1, 2) }}|{{ [(1, 'a')] }}|{{ {'k': (1,2)}|tojson }}", "(1, 2)|[(1, 'a')]|{\"k\": [1, 2]}"],
    ["{{ 3.0 }}|{{ 10 / 2 }}|{{ 2 ** 0.5 }}|{{ -7 // 2 }}|{{ -7 % 3 }}", "3.0|5.0|1.4142135623730951|-4|2"],
    ["{{ none ~ 1 ~ true }}|{{ [none, true, 1.0] }}|{{ 'a' ~ [1] }}", "None1True|[None, True, 1.0]|a[1]"],
    ["{{ 1e20 }}|{{ 1.5e-7 }}|{{ 2E3 }}|{{ -1e2 }}|{{ 3 * 1e2 }}", "1e+20|1.5e-07|2000.0|-100.0|300.0"],
    ["{{ () }}|{{ (1,) }}|{{ ('a', 2,) }}|{{ () | length }}|{{ '%s!' % () if false else 'x' }}", "()|(1,)|('a', 2)|0|x"],
    ["{% set e = 5 %}{{ e }}|{{ 'e1' }}|{% for a in (1, 2,) %}{{ a }}{% endfor %}", "5|e1|12"],
    ["{{ '100%%' % () }}", "100%"],
  ])('%s', (source, python) => {
    expect(render(source)).toBe(python);
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
