import { randomBytes } from 'node:crypto';

/** Response ids in OpenAI's style: a prefix and 24 random hex digits. */
export const responseId = (prefix: 'cmpl' | 'chatcmpl') => `${prefix}-${randomBytes(12).toString('hex')}`;

/** Tool call ids in OpenAI's style: `call_` and 24 random hex digits. */
export const toolCallId = () => `call_${randomBytes(12).toString('hex')}`;

/** Ids of the Responses API: `resp_`, `msg_` or `fc_` and 48 random hex digits. */
export const itemId = (prefix: 'resp' | 'msg' | 'fc' | 'rs') => `${prefix}_${randomBytes(24).toString('hex')}`;
