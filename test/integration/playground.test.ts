import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import type { RunningServer } from '../../src/server.js';
import { goldens } from '../helpers/goldens.js';
import { copyModel } from '../helpers/model-copy.js';
import { MODEL_DIRS, postJson, startTestServer } from '../helpers/server.js';

/** The playground at `/`, in headless Chromium (Debian's package; `.ci/run` installs it). */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const OUTPUT = fileURLToPath(new URL('../output/', import.meta.url));
const golden = goldens['tinystories-gpt2'].prompts[0]!;

let browser: Browser;
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium package (.ci/run does) or set CHROMIUM_PATH`);
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync(OUTPUT, { recursive: true });
});
afterAll(() => browser?.close());

async function open(server: RunningServer): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 760 });
  await page.goto(`${server.url}/`);
  return page;
}

const setField = async (page: Page, id: string, value: string) => {
  await page.$eval(
    `#${id}`,
    (element, text) => {
      (element as unknown as { value: string }).value = text;
      element.dispatchEvent(new Event('change'));
    },
    value,
  );
};

/** In-page expressions: they run in the browser, where the DOM is (this project's TypeScript has no DOM types). */
const MODELS_LISTED = "document.getElementById('model').value !== ''";
type Field = { value: string; dataset: Record<string, string | undefined>; hidden: boolean; disabled: boolean; textContent: string | null };

/** The playground in chat mode, set to greedy decoding of `maxTokens` tokens, `message` typed and not yet sent. */
async function greedyChat(server: RunningServer, maxTokens: number, message: string): Promise<Page> {
  const page = await open(server);
  await page.waitForFunction(MODELS_LISTED);
  await page.click('#toggle-settings');
  await setField(page, 'temperature', '0');
  await setField(page, 'max_tokens', String(maxTokens));
  await page.type('#input', message);
  return page;
}

const lastAnswer = (page: Page) => page.$eval('.message.assistant:last-child .text', (element) => element.textContent ?? '');

async function metric(server: RunningServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  // The server's one model: its sample, with or without labels.
  const line = text.split('\n').find((row) => row.startsWith(`${name} `) || row.startsWith(`${name}{`));
  return Number(line?.split(' ').at(-1));
}

describe('the playground on an open server', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('streams a chat answer that matches the API for the same greedy request, with its numbers', async () => {
    const page = await greedyChat(server, 24, golden.prompt);
    // Watch the text grow: it arrives in pieces, not at once.
    const lengths = page.evaluate(`new Promise((resolve) => {
      const seen = [];
      const observer = new MutationObserver(() => {
        const text = document.querySelector('.message.assistant:last-child .text')?.textContent ?? '';
        if (text.length > 0 && seen.at(-1) !== text.length) seen.push(text.length);
        if (document.querySelector('.message.assistant:last-child .stats')) {
          observer.disconnect();
          resolve(seen);
        }
      });
      observer.observe(document.getElementById('conversation'), { subtree: true, childList: true, characterData: true });
    })`) as Promise<number[]>;
    await page.keyboard.press('Enter');
    expect((await lengths).length).toBeGreaterThan(1);
    const api = await postJson(server, '/v1/chat/completions', { model: server.model.id, messages: [{ role: 'user', content: golden.prompt }], temperature: 0, max_tokens: 24 });
    expect(await lastAnswer(page)).toBe(api.body.choices[0].message.content);
    const stats = await page.$eval('.message.assistant:last-child .stats', (element) => ({ text: element.textContent, ...(element as unknown as Field).dataset }));
    expect(stats).toMatchObject({ tokens: String(api.body.usage.completion_tokens), finish: api.body.choices[0].finish_reason });
    expect(stats.text).toMatch(/\d+ tokens · first token \d+ ms · [\d.]+ tokens\/s · finish: (stop|length)/);
    await page.screenshot({ path: `${OUTPUT}playground-chat.png` });
    await page.close();
  });

  it('appends a raw completion to the prompt, and Escape stops a long one (the server cancels it)', async () => {
    const page = await open(server);
    await page.waitForFunction(MODELS_LISTED);
    await page.click('input[name="mode"][value="completion"]');
    await page.click('#toggle-settings');
    await setField(page, 'temperature', '0');
    await setField(page, 'max_tokens', '12');
    await page.type('#prompt', golden.prompt);
    await page.click('#send');
    await page.waitForSelector('#completion-stats[data-finish]');
    const api = await postJson(server, '/v1/completions', { model: server.model.id, prompt: golden.prompt, temperature: 0, max_tokens: 12 });
    expect(await page.$eval('#prompt', (element) => (element as unknown as Field).value)).toBe(golden.prompt + api.body.choices[0].text);

    // A seed whose story runs to max_tokens without an end-of-sequence token: still going when stopped.
    await setField(page, 'temperature', '1');
    await setField(page, 'seed', '2');
    await setField(page, 'max_tokens', '480');
    await setField(page, 'prompt', 'Once upon a time');
    await page.click('#send');
    await page.waitForFunction("document.getElementById('prompt').value.length > 'Once upon a time'.length + 20");
    expect(await metric(server, 'ortserve_active_sequences')).toBe(1);
    await page.keyboard.press('Escape');
    await page.waitForSelector('#completion-stats[data-finish="stopped"]');
    const deadline = Date.now() + 10_000;
    while ((await metric(server, 'ortserve_active_sequences')) !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await metric(server, 'ortserve_active_sequences')).toBe(0);
    expect(Number(await page.$eval('#completion-stats', (element) => (element as unknown as Field).dataset.tokens))).toBeLessThan(480);
    await page.close();
  });

  it('fits a phone-width screen', async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 375, height: 740 });
    await page.goto(`${server.url}/`);
    const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: `${OUTPUT}playground-phone.png` });
    await page.close();
  });
});

describe('the playground with a model that thinks aloud', () => {
  // The tiny Llama with a generation prompt that opens <think>, as DeepSeek-R1's: its replies are all thinking.
  const model = copyModel(MODEL_DIRS['tiny-llama']!, {
    'tokenizer_config.json': (json) =>
      void (json.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}{# </think> #}"),
  });
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ model: model.dir, servedModelNames: ['tiny-thinker'] });
  });
  afterAll(async () => {
    await server.close();
    model.remove();
  });

  it('shows the thinking apart from the answer, folded', async () => {
    const page = await greedyChat(server, 12, 'Two and two?');
    await page.keyboard.press('Enter');
    await page.waitForSelector('.message.assistant:last-child .stats');
    const shown = await page.$eval('.message.assistant:last-child', (element) => {
      const details = element.querySelector('details.thinking') as unknown as Field & { open: boolean };
      return { hidden: details.hidden, open: details.open, label: element.querySelector('summary')?.textContent, thinking: element.querySelector('.thinking-text')?.textContent, answer: element.querySelector('.text')?.textContent };
    });
    const api = await postJson(server, '/v1/chat/completions', { model: 'tiny-thinker', messages: [{ role: 'user', content: 'Two and two?' }], temperature: 0, max_tokens: 12 });
    expect(shown).toEqual({ hidden: false, open: false, label: 'Thought', thinking: api.body.choices[0].message.reasoning_content, answer: '' });
    await page.screenshot({ path: `${OUTPUT}playground-thinking.png` });
    await page.close();
  });
});

describe('the playground on a server with API keys', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ apiKeys: ['right-key'] });
  });
  afterAll(() => server.close());

  it('is served without a key, asks for one, shows a 401 for a wrong one, and works with the right one', async () => {
    const page = await open(server);
    await page.waitForSelector('#error:not([hidden])');
    expect(await page.$eval('#error', (element) => element.textContent)).toContain('API key');
    expect(await page.$eval('#settings', (element) => (element as unknown as Field).hidden)).toBe(false);

    await setField(page, 'api-key', 'wrong-key');
    await page.type('#input', 'Hello');
    await page.keyboard.press('Enter');
    await page.waitForFunction("document.getElementById('error').textContent.includes('valid API key')");
    expect(await page.$$('.message.assistant')).toHaveLength(0);

    await setField(page, 'api-key', 'right-key');
    await page.waitForFunction(MODELS_LISTED);
    expect(await page.evaluate("sessionStorage.getItem('ortserve-api-key')")).toBe('right-key');
    await setField(page, 'max_tokens', '8');
    await page.type('#input', 'Hello');
    await page.keyboard.press('Enter');
    await page.waitForSelector('.message.assistant .stats');
    expect(await page.$eval('#error', (element) => (element as unknown as Field).hidden)).toBe(true);
    await page.close();
  });
});

describe('the playground while the server drains', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('says the server is shutting down (503), and stays ready to send', async () => {
    const page = await open(server);
    await page.waitForFunction(MODELS_LISTED);
    await server.lifecycle.drain(0);
    await page.type('#input', 'Hello');
    await page.keyboard.press('Enter');
    await page.waitForFunction("document.getElementById('error').textContent.includes('shutting down')");
    expect(await page.$eval('#send', (element) => (element as unknown as Field).disabled)).toBe(false);
    await page.close();
  });
});

describe('the playground when the connection drops', () => {
  it('says so instead of waiting, and is ready to send again', async () => {
    const server = await startTestServer();
    const page = await open(server);
    try {
      await page.waitForFunction(MODELS_LISTED);
      await page.click('input[name="mode"][value="completion"]');
      await page.click('#toggle-settings');
      // The seed whose story runs to max_tokens: still streaming when the connection is cut.
      await setField(page, 'temperature', '1');
      await setField(page, 'seed', '2');
      await setField(page, 'max_tokens', '480');
      await page.type('#prompt', 'Once upon a time');
      await page.click('#send');
      await page.waitForFunction("document.getElementById('prompt').value.length > 'Once upon a time'.length + 20");
      // Every connection is cut, the stream with them.
      server.app.server.closeAllConnections();
      await page.waitForFunction("document.getElementById('error').textContent.includes('connection dropped')");
      expect(await page.$eval('#send', (element) => (element as unknown as Field).disabled)).toBe(false);
    } finally {
      await page.close();
      await server.close();
    }
  });
});
