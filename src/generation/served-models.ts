import { modelNotFound } from '../errors.js';
import type { ServingContext } from './context.js';

/**
 * The models this server serves, each with its engine and workers, found by the name a request
 * gives: its id or one of its aliases. Routes ask here for the model of each request.
 */
export class ServedModels {
  constructor(private readonly served: readonly [ServingContext, ...ServingContext[]]) {}

  /** The served model named `name`; a 404 in the API's shape when there is none. */
  resolve(name: string): ServingContext {
    const found = this.served.find(({ model }) => model.id === name || model.aliases.includes(name));
    if (!found) throw modelNotFound(name);
    return found;
  }

  /** Every served model, in the order they were configured. */
  get all(): readonly ServingContext[] {
    return this.served;
  }

  /** The model of requests that may leave it out (tokenize). */
  get first(): ServingContext {
    return this.served[0];
  }
}
