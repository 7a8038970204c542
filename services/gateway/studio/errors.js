// Errors in words: what a person should read for an ApiError (or any other failure).

import { ApiError } from "./api.js";

/**
 * A sentence for an error: the rate limit's retry time, the field a 413/422 refused, a
 * missing key...
 * @param {unknown} error
 * @returns {string}
 */
export function describeError(error) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error}`;
  const field = error.field ? `“${error.field}”: ` : "";
  const retry =
    error.retryAfter !== null ? ` Try again in ${formatSeconds(error.retryAfter)}.` : "";
  switch (error.status) {
    case 0:
      return `${error.reason}. Check the connection and try again.`;
    case 401:
      return "The gateway needs an API key: enter yours under “API key” (it stays in this tab only).";
    case 403:
      return `Access refused: ${field}${error.reason}.`;
    case 404:
      return `Not found: ${field}${error.reason}.`;
    case 409:
      return `Not possible now: ${field}${error.reason}.`;
    case 413:
      return `Too large: ${field}${error.reason}.`;
    case 422:
      return `Not accepted: ${field}${error.reason}.`;
    case 429:
      return error.type === "quota_exceeded"
        ? `Daily image quota used up: ${error.reason}.${retry}`
        : error.type === "queue_full"
          ? `The generation queue is full.${retry}`
          : `Too many requests: ${error.reason}.${retry}`;
    default:
      if (error.status >= 500) return `The service had a problem (${error.status}): ${error.reason}.${retry}`;
      return `${error.status}: ${field}${error.reason}.${retry}`;
  }
}

/**
 * "42 seconds", "1 second", "3 min 5 s".
 * @param {number} seconds
 */
export function formatSeconds(seconds) {
  const whole = Math.ceil(seconds);
  if (whole < 120) return `${whole} second${whole === 1 ? "" : "s"}`;
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}
