// The playground: a chat (or raw completion) page over this server's own API, streamed.
const $ = (id) => document.getElementById(id);
const KEY_STORAGE = 'ortserve-api-key';

const state = { messages: [], controller: undefined, busy: false };

const settings = () => {
  const number = (id) => ($(id).value.trim() === '' ? undefined : Number($(id).value));
  const stop = $('stop').value
    .split(',')
    .map((text) => text.replace(/\\n/g, '\n'))
    .filter((text) => text !== '');
  return {
    model: $('model').value,
    temperature: number('temperature'),
    top_p: number('top_p'),
    max_tokens: number('max_tokens'),
    seed: number('seed'),
    ...(stop.length > 0 && { stop: stop.slice(0, 4) }),
  };
};

const mode = () => document.querySelector('input[name="mode"]:checked').value;

function headers() {
  const key = $('api-key').value.trim();
  return { 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) };
}

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = !text;
}

/** What an error answer means, in words. */
async function describeError(response) {
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON
  }
  if (response.status === 401) {
    openSettings();
    $('api-key').focus();
    return `This server needs a valid API key: enter it under Settings (API key). (${message})`;
  }
  if (response.status === 429) {
    const wait = response.headers.get('retry-after');
    return `The server is busy${wait ? `: try again in ${wait} s` : ''}. (${message})`;
  }
  if (response.status === 503) return `The server is shutting down or not ready; try again shortly. (${message})`;
  return message;
}

function openSettings() {
  $('settings').hidden = false;
  $('toggle-settings').setAttribute('aria-expanded', 'true');
}

async function loadModels() {
  try {
    const response = await fetch('/v1/models', { headers: headers() });
    if (!response.ok) return showError(await describeError(response));
    const { data } = await response.json();
    $('model').replaceChildren(...data.map((model) => new Option(model.id, model.id)));
    showError('');
  } catch {
    showError('Cannot reach the server.');
  }
}

/** Reads a stream of server-sent events, calling `onEvent` with each JSON payload. */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let done = false;
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    buffer += decoder.decode(value, { stream: true });
    let boundary;
    while ((boundary = buffer.indexOf('\n\n')) !== -1) {
      const event = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      if (!event.startsWith('data: ')) continue;
      const data = event.slice(6);
      if (data === '[DONE]') done = true;
      else onEvent(JSON.parse(data));
    }
  }
  return done;
}

function formatStats(stats) {
  const parts = [`${stats.tokens} tokens`];
  if (stats.ttft !== undefined) parts.push(`first token ${Math.round(stats.ttft)} ms`);
  if (stats.tokensPerSecond !== undefined) parts.push(`${stats.tokensPerSecond.toFixed(1)} tokens/s`);
  parts.push(`finish: ${stats.finish}`);
  return parts.join(' · ');
}

/**
 * Streams one request; `onText` gets each piece of text, `onReasoning` each piece of a model's
 * thinking. Resolves with the answer's numbers, or throws an Error whose message is what to show.
 */
async function stream(path, body, onText, onReasoning = () => {}) {
  const controller = new AbortController();
  state.controller = controller;
  const started = performance.now();
  let first;
  let tokens = 0;
  let usage;
  let finish = 'unknown';
  let failure;
  let response;
  try {
    response = await fetch(path, { method: 'POST', headers: headers(), body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }), signal: controller.signal });
  } catch (err) {
    if (controller.signal.aborted) return { tokens, finish: 'stopped' };
    throw new Error('Cannot reach the server.');
  }
  if (!response.ok) throw new Error(await describeError(response));
  let completed = false;
  try {
    completed = await readEvents(response, (event) => {
      if (event.error) {
        failure = event.error.message;
        return;
      }
      if (event.usage) usage = event.usage;
      for (const choice of event.choices ?? []) {
        const thinking = choice.delta?.reasoning_content ?? '';
        if (thinking) {
          first ??= performance.now();
          tokens++;
          onReasoning(thinking);
        }
        const text = choice.delta?.content ?? choice.text ?? '';
        if (text) {
          first ??= performance.now();
          tokens++;
          onText(text);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    });
  } catch (err) {
    if (!controller.signal.aborted) throw new Error('The connection dropped before the answer was complete.');
    finish = 'stopped';
  }
  if (failure) throw new Error(failure);
  if (!completed && finish !== 'stopped') throw new Error('The connection dropped before the answer was complete.');
  const ended = performance.now();
  const count = usage?.completion_tokens ?? tokens;
  return {
    tokens: count,
    finish,
    ...(first !== undefined && { ttft: first - started }),
    ...(first !== undefined && ended > first && count > 1 && { tokensPerSecond: (count - 1) / ((ended - first) / 1000) }),
  };
}

function setBusy(busy) {
  state.busy = busy;
  $('send').disabled = busy;
  $('stop-button').disabled = !busy;
}

function addMessage(role, text) {
  const element = document.createElement('div');
  element.className = `message ${role}`;
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  element.append(body);
  $('conversation').append(element);
  element.scrollIntoView({ block: 'end' });
  return element;
}

async function sendChat() {
  const content = $('input').value;
  if (!content.trim()) return;
  $('input').value = '';
  state.messages.push({ role: 'user', content });
  addMessage('user', content);
  const reply = addMessage('assistant', '');
  const text = reply.querySelector('.text');
  // A model that thinks aloud: its thinking apart from the answer, folded.
  const thinking = document.createElement('details');
  thinking.className = 'thinking';
  thinking.hidden = true;
  const label = document.createElement('summary');
  label.textContent = 'Thinking…';
  const thought = document.createElement('div');
  thought.className = 'thinking-text';
  thinking.append(label, thought);
  reply.prepend(thinking);
  let reasoning = '';
  const system = $('system').value.trim();
  const messages = [...(system ? [{ role: 'system', content: system }] : []), ...state.messages];
  let answer = '';
  try {
    const stats = await stream(
      '/v1/chat/completions',
      { ...settings(), messages },
      (piece) => {
        answer += piece;
        text.textContent = answer;
        reply.scrollIntoView({ block: 'end' });
      },
      (piece) => {
        reasoning += piece;
        thinking.hidden = false;
        thought.textContent = reasoning;
        reply.scrollIntoView({ block: 'end' });
      },
    );
    label.textContent = 'Thought';
    state.messages.push({ role: 'assistant', content: answer });
    const line = document.createElement('div');
    line.className = 'stats';
    line.dataset.finish = stats.finish;
    line.dataset.tokens = String(stats.tokens);
    line.textContent = formatStats(stats);
    reply.append(line);
  } catch (err) {
    reply.remove();
    state.messages.pop();
    showError(err.message);
  }
}

async function sendCompletion() {
  const prompt = $('prompt');
  if (!prompt.value) return;
  const stats = $('completion-stats');
  stats.textContent = '';
  delete stats.dataset.finish;
  try {
    const result = await stream('/v1/completions', { ...settings(), prompt: prompt.value }, (piece) => {
      prompt.value += piece;
      prompt.scrollTop = prompt.scrollHeight;
    });
    stats.dataset.finish = result.finish;
    stats.dataset.tokens = String(result.tokens);
    stats.textContent = formatStats(result);
  } catch (err) {
    showError(err.message);
  }
}

async function send() {
  if (state.busy || !$('model').value) {
    if (!$('model').value) await loadModels();
    if (state.busy || !$('model').value) return;
  }
  showError('');
  setBusy(true);
  try {
    await (mode() === 'chat' ? sendChat() : sendCompletion());
  } finally {
    state.controller = undefined;
    setBusy(false);
  }
}

function stop() {
  state.controller?.abort();
}

function applyMode() {
  const chat = mode() === 'chat';
  $('conversation').hidden = !chat;
  $('completion').hidden = chat;
  $('input').hidden = !chat;
  $('send').textContent = chat ? 'Send' : 'Generate';
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
for (const field of [$('input'), $('prompt')]) {
  field.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && field === $('input')) {
      event.preventDefault();
      void send();
    }
  });
}
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') stop();
});
$('stop-button').addEventListener('click', stop);
$('clear').addEventListener('click', () => {
  stop();
  state.messages = [];
  $('conversation').replaceChildren();
  $('completion-stats').textContent = '';
  showError('');
});
$('toggle-settings').addEventListener('click', () => {
  const open = $('settings').hidden;
  $('settings').hidden = !open;
  $('toggle-settings').setAttribute('aria-expanded', String(open));
});
for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener('change', applyMode);
$('api-key').value = sessionStorage.getItem(KEY_STORAGE) ?? '';
$('api-key').addEventListener('change', () => {
  sessionStorage.setItem(KEY_STORAGE, $('api-key').value.trim());
  void loadModels();
});
applyMode();
void loadModels();
