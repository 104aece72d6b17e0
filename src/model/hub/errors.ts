import { ModelLoadError } from '../errors.js';
import type { HubAccess } from './access.js';

/** A model that cannot be brought from the hub: one sentence naming the file and what to do. */
export class HubError extends ModelLoadError {
  constructor(
    message: string,
    /** The cause alone, without the advice, for a retry's log line. */
    readonly reason: string = message,
    /** The hub could not be reached, as opposed to answering: a cached copy may stand in. */
    readonly unreachable = false,
  ) {
    super(message);
  }
}

interface HubApiFailure {
  statusCode: number;
  message: string;
}

/** The hub client's HubApiError, told by its shape: the client is imported only when a pull runs. */
const isHubApiFailure = (err: unknown): err is HubApiFailure =>
  err instanceof Error && err.name !== 'HubError' && typeof (err as Partial<HubApiFailure>).statusCode === 'number';

/** An answer of the hub that trying again will not change: no access, no such repository or file. */
export const isHubRefusal = (err: unknown) => isHubApiFailure(err) && err.statusCode >= 400 && err.statusCode < 500 && err.statusCode !== 408 && err.statusCode !== 429;

/** What a network error says, from undici's `fetch failed` and its cause. */
function networkCause(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const message = err instanceof Error ? err.message : String(err);
  if (cause?.code) return `${cause.code}${cause.message && !cause.message.includes(cause.code) ? `: ${cause.message}` : ''}`;
  return cause?.message ?? message;
}

/** A failure of a hub request, as one sentence naming what was asked for and what to do. */
export function describeFailure(err: unknown, where: { id: string; revision: string; what: string; file: boolean; access: HubAccess }): HubError {
  const { id, revision, what, access } = where;
  if (isHubApiFailure(err)) {
    const said = err.message.split('. URL:')[0];
    const answer = `the hub (${access.endpoint}) answered ${err.statusCode} for ${what} ("${said}")`;
    if (err.statusCode === 401 || err.statusCode === 403) {
      const terms = where.file ? `${id} is gated or private` : `${id} does not exist, or is private or gated (check the name)`;
      const advice = access.token
        ? `${terms}, and the token in ${access.tokenSource} has no access to it: accept its terms on its hub page with the token's account, or use another token`
        : `${terms}: accept its terms on its hub page, then set HF_TOKEN to a token of that account (https://huggingface.co/settings/tokens)`;
      return new HubError(`${answer}: ${advice}`, answer);
    }
    if (err.statusCode === 404) {
      return new HubError(`${answer}: ${id} at revision ${revision} is not on the hub, or is private (check the name${access.token ? '' : ', or set HF_TOKEN'})`, answer);
    }
    return new HubError(`${answer}: try again later`, answer);
  }
  if (err instanceof Error && err.name === 'AbortError') return new HubError(`fetching ${what} from ${access.endpoint} was cut off`, 'cut off');
  const cause = networkCause(err);
  return new HubError(
    `cannot reach ${access.endpoint} for ${what} (${cause}): check the network, HF_ENDPOINT or the proxy; a model already in the cache is served without the network with --offline (or HF_HUB_OFFLINE=1)`,
    `the transfer failed (${cause})`,
    true,
  );
}
