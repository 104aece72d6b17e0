import { ChatTemplate } from '../../src/model/chat-template.js';
import { templateMessage } from '../../src/openai/chat/messages.js';
import { ChatCompletionRequestSchema } from '../../src/openai/schemas.js';

/** Chat messages as the wire has them → as the chat template reads them. */

const MAX_DEPTH = 64;
const parsed = (messages: unknown[]) => ChatCompletionRequestSchema.parse({ model: 'm', messages }).messages;

describe('templateMessage', () => {
  it('joins text parts with a line break between two, as vLLM does', () => {
    const [message] = parsed([{ role: 'user', content: [{ type: 'text', text: 'First.' }, { type: 'text', text: 'Second.' }] }]);
    expect(templateMessage(message!, 0, MAX_DEPTH).content).toBe('First.\nSecond.');
  });

  it("keeps an assistant message's fields the server does not use, reasoning_content among them", () => {
    const [message] = parsed([{ role: 'assistant', content: 'Four.', reasoning_content: 'Two and two.', thinking: { steps: 2 } }]);
    expect(templateMessage(message!, 0, MAX_DEPTH)).toEqual({ role: 'assistant', content: 'Four.', reasoning_content: 'Two and two.', thinking: { steps: 2 } });
  });

  it('renders them with a template that reads them', () => {
    const template = new ChatTemplate(
      { chat_template: '{% for m in messages %}[{{ m.role }}]{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}{% if m.thinking %}({{ m.thinking.steps }}){% endif %}{% endfor %}' },
      {},
    );
    const messages = parsed([
      { role: 'user', content: 'Two and two?' },
      { role: 'assistant', content: 'Four.', reasoning_content: 'Two and two.', thinking: { steps: 2 } },
    ]).map((message, index) => templateMessage(message, index, MAX_DEPTH));
    expect(template.render(messages, undefined, { addGenerationPrompt: false })).toBe('[user]Two and two?[assistant]<think>Two and two.</think>Four.(2)');
  });
});
