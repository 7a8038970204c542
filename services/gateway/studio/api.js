// A small, dependency-free client of the LLMGA gateway for browsers (and Node 18+).
//
// Copy this one file into a frontend. It needs only fetch, ReadableStream, EventSource
// (browsers; elsewhere the fetch-based stream is used) and crypto.randomUUID.
//
//   import { LlmgaClient } from "./api.js";
//   const api = new LlmgaClient({ baseUrl: "", apiKey: sessionStorage.getItem("key") });
//   const turn = await api.chat({ message: "draw a fox" }, { onDelta: (text) => show(text) });
//   const stop = api.jobs.events(turn.jobs[0], { onStatus: (job) => render(job) });
//
// What it does for a caller: the key in `Authorization`, every JSON error turned into an
// ApiError (status, type, field, retryAfter), bounded retries that honour Retry-After for
// 429 and 503, an Idempotency-Key on every create (so a retried create runs once), job
// event streams that reconnect, and image URLs an <img> can show.

/**
 * @typedef {{id: string, url: string, seed?: number, width: number, height: number}} Image
 * @typedef {{step: number, total: number}} Progress
 * @typedef {{
 *   id: string, task: string,
 *   status: "queued"|"running"|"succeeded"|"failed"|"canceled",
 *   progress: Progress, events_url: string, images: Image[], prompt: string,
 *   error: string|null, conversation_id: string|null, input_image_ids: string[],
 *   mask_image_id: string|null, outpaint: object|null, restore: boolean|null,
 *   source_caption: string|null, target_caption: string|null, instruction: string|null,
 *   queue_position: number|null, estimated_start_s: number|null
 * }} Job
 * @typedef {{step: number, total: number, image_index: number, image_id: string,
 *   url: string, width: number, height: number}} Preview
 * @typedef {{id: string} | {b64: string}} ImageRef  an uploaded image's id, or base64 / data URI
 * @typedef {{
 *   conversation_id: string, reply: string, generation_prompts: string[], jobs: Job[],
 *   source_image_id: string|null, source_caption: string|null,
 *   usage: {prompt_tokens: number, completion_tokens: number}, finish_reason: string
 * }} ChatResponse
 * @typedef {{image_id: string, job_id: string|null, task: string|null,
 *   source_image_id: string|null, turn_index: number|null}} LineageStep
 * @typedef {{data: any[], next_cursor: string|null}} Page
 */

export const TERMINAL_STATUSES = new Set(["succeeded", "failed", "canceled"]);

/** A gateway error: `{error: {type, message, field}}` plus the HTTP status. */
export class ApiError extends Error {
  /**
   * @param {number} status  HTTP status (0: the request never got an answer)
   * @param {string} type    the error body's `type` (`rate_limited`, `invalid_request`, ...)
   * @param {string} message the gateway's message, meant for people
   * @param {{field?: string|null, retryAfter?: number|null, details?: any[]}} [extra]
   */
  constructor(status, type, message, extra = {}) {
    super(message);
    this.name = "ApiError";
    /** @type {number} */ this.status = status;
    /** @type {string} */ this.type = type;
    /** @type {string} */ this.reason = message;
    /** @type {string|null} the request field at fault, e.g. `images[0].b64` */
    this.field = extra.field ?? null;
    /** @type {number|null} seconds to wait before sending it again (429, 503, 504) */
    this.retryAfter = extra.retryAfter ?? null;
    /** @type {any[]} */ this.details = extra.details ?? [];
  }
}

/**
 * The ApiError of a non-2xx response (its JSON error body, or the status text).
 * @param {Response} response
 * @returns {Promise<ApiError>}
 */
export async function errorFromResponse(response) {
  const retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page): the status alone
  }
  const error = body && typeof body.error === "object" ? body.error : {};
  return new ApiError(
    response.status,
    error.type || "http_error",
    error.message || `${response.status} ${response.statusText}`.trim(),
    { field: error.field ?? null, retryAfter, details: error.details },
  );
}

/**
 * Seconds from a Retry-After header (seconds or an HTTP date); null if absent.
 * @param {string|null} value
 * @returns {number|null}
 */
export function parseRetryAfter(value) {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

const RETRIED_STATUSES = new Set([429, 503]);

/**
 * @typedef {{
 *   baseUrl?: string, apiKey?: string|null, maxRetries?: number, maxRetryWaitS?: number,
 *   fetch?: typeof fetch, onRetry?: (error: ApiError, waitS: number) => void
 * }} ClientOptions
 */

export class LlmgaClient {
  /**
   * @param {ClientOptions} [options]
   *   baseUrl: the gateway ("" = this page's origin); apiKey: sent as a Bearer token;
   *   maxRetries (2) retries of a 429/503 whose Retry-After is at most maxRetryWaitS (10 s),
   *   longer waits are the caller's to show; onRetry: told before each wait.
   */
  constructor(options = {}) {
    this.baseUrl = (options.baseUrl ?? "").replace(/\/$/, "");
    this.apiKey = options.apiKey ?? null;
    this.maxRetries = options.maxRetries ?? 2;
    this.maxRetryWaitS = options.maxRetryWaitS ?? 10;
    this.onRetry = options.onRetry ?? null;
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    /** Per-task image jobs (POST /v1/images). */
    this.images = new ImagesApi(this);
    /** Job reads, waits, cancels, listing and event streams. */
    this.jobs = new JobsApi(this);
    /** Uploads (multipart). */
    this.uploads = new UploadsApi(this);
    /** Conversation listing, turns and lineage. */
    this.conversations = new ConversationsApi(this);
  }

  /**
   * An absolute URL of a gateway path (URLs in answers may already be absolute).
   * @param {string} path
   */
  url(path) {
    return /^https?:\/\//.test(path) ? path : this.baseUrl + path;
  }

  /** @returns {Record<string, string>} */
  authHeaders() {
    return this.apiKey ? { Authorization: `Bearer ${this.apiKey}` } : {};
  }

  /**
   * One HTTP call: the key added, non-2xx thrown as ApiError, 429/503 retried after their
   * Retry-After (bounded). Returns the Response (2xx).
   * @param {string} method
   * @param {string} path
   * @param {{json?: any, body?: BodyInit, headers?: Record<string,string>,
   *          signal?: AbortSignal, retries?: number}} [init]
   * @returns {Promise<Response>}
   */
  async request(method, path, init = {}) {
    const headers = { ...this.authHeaders(), ...(init.headers ?? {}) };
    let body = init.body;
    if (init.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(init.json);
    }
    const retries = init.retries ?? this.maxRetries;
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await this._fetch(this.url(path), { method, headers, body, signal: init.signal });
      } catch (cause) {
        if (cause && cause.name === "AbortError") throw cause;
        throw new ApiError(0, "network_error", `the gateway could not be reached (${cause})`);
      }
      if (response.ok) return response;
      const error = await errorFromResponse(response);
      const wait = error.retryAfter;
      const retry =
        RETRIED_STATUSES.has(response.status) &&
        attempt < retries &&
        wait !== null &&
        wait <= this.maxRetryWaitS;
      if (!retry) throw error;
      if (this.onRetry) this.onRetry(error, wait);
      await sleep(wait * 1000, init.signal);
    }
  }

  /**
   * A JSON call: the parsed body (null for 204).
   * @param {string} method
   * @param {string} path
   * @param {Parameters<LlmgaClient["request"]>[2]} [init]
   */
  async json(method, path, init = {}) {
    const response = await this.request(method, path, init);
    return response.status === 204 ? null : response.json();
  }

  /**
   * One chat turn (POST /v1/chat). With `onDelta` the reply streams in (server-sent
   * events): onDelta gets each piece of visible text as it arrives. Resolves to the
   * ChatResponse (its jobs already queued) either way.
   * @param {{message: string, conversation_id?: string, task?: string,
   *   images?: ImageRef[], mask?: ImageRef, outpaint?: object, restore?: boolean,
   *   [option: string]: any}} request
   * @param {{onDelta?: (text: string) => void, signal?: AbortSignal,
   *   idempotencyKey?: string}} [options]
   * @returns {Promise<ChatResponse>}
   */
  async chat(request, options = {}) {
    if (!options.onDelta) {
      const headers = { "Idempotency-Key": options.idempotencyKey ?? newIdempotencyKey() };
      return this.json("POST", "/v1/chat", { json: request, headers, signal: options.signal });
    }
    // A stream cannot be replayed, so the gateway refuses Idempotency-Key with stream.
    const response = await this.request("POST", "/v1/chat", {
      json: { ...request, stream: true },
      headers: { Accept: "text/event-stream" },
      signal: options.signal,
    });
    /** @type {ChatResponse|null} */
    let result = null;
    for await (const { event, data } of readEventStream(response)) {
      if (event === "chat.result") result = JSON.parse(data);
      else if (event === "error") {
        const error = JSON.parse(data).error ?? {};
        throw new ApiError(200, error.type ?? "stream_error", error.message ?? "the stream failed", {
          field: error.field ?? null,
        });
      } else if (data !== "[DONE]") {
        const delta = JSON.parse(data).choices?.[0]?.delta?.content;
        if (delta) options.onDelta(delta);
      }
    }
    if (!result) throw new ApiError(0, "stream_ended", "the chat stream ended before its result");
    return result;
  }

  /**
   * A URL an <img src> can load: signed URLs (and any URL when no key is set) as they
   * are; otherwise the bytes fetched with the key, as an object URL (revoke it when done).
   * @param {string} url  an image `url` from an answer
   * @returns {Promise<string>}
   */
  async imageSrc(url) {
    if (!this.apiKey || isSigned(url)) return this.url(url);
    const response = await this.request("GET", url);
    return URL.createObjectURL(await response.blob());
  }
}

class ImagesApi {
  /** @param {LlmgaClient} client */
  constructor(client) {
    this.client = client;
  }

  /**
   * Queue an image job (POST /v1/images): `task` is t2i, similar, inpaint, outpaint,
   * edit, controlnet or restore, with that task's fields (docs/api.md). An
   * Idempotency-Key is sent (a fresh one unless given), so a retry creates one job.
   * @param {{task: string, prompt?: string, image?: ImageRef, mask?: ImageRef,
   *   reference?: ImageRef, outpaint?: object, control?: object, restore?: boolean,
   *   [option: string]: any}} request
   * @param {{idempotencyKey?: string, waitS?: number, signal?: AbortSignal}} [options]
   *   waitS: wait up to that long for the job to end (Prefer: wait)
   * @returns {Promise<Job & {refined_prompt: string|null}>}
   */
  create(request, options = {}) {
    const headers = { "Idempotency-Key": options.idempotencyKey ?? newIdempotencyKey() };
    if (options.waitS !== undefined) headers.Prefer = `wait=${options.waitS}`;
    return this.client.json("POST", "/v1/images", { json: request, headers, signal: options.signal });
  }

  /**
   * Delete an image now (DELETE /v1/images/{id}).
   * @param {string} imageId
   */
  delete(imageId) {
    return this.client.json("DELETE", `/v1/images/${encodeURIComponent(imageId)}`);
  }
}

class UploadsApi {
  /** @param {LlmgaClient} client */
  constructor(client) {
    this.client = client;
  }

  /**
   * Upload an image file (multipart, field `image`): PNG, JPEG, WebP...
   * @param {Blob} file  a File from a picker, a drop or the clipboard, or a canvas blob
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Image>}  its id (for `{id}` references), url, width, height
   */
  create(file, options = {}) {
    const form = new FormData();
    form.append("image", file, /** @type {File} */ (file).name || "image.png");
    return this.client.json("POST", "/v1/uploads", { body: form, signal: options.signal });
  }
}

class JobsApi {
  /** @param {LlmgaClient} client */
  constructor(client) {
    this.client = client;
  }

  /**
   * @param {string} jobId
   * @param {{waitS?: number}} [options]  wait up to waitS seconds (<= LLMGA_MAX_WAIT_S) for it to end
   * @returns {Promise<Job>}
   */
  get(jobId, options = {}) {
    const headers = options.waitS !== undefined ? { Prefer: `wait=${options.waitS}` } : {};
    return this.client.json("GET", `/v1/jobs/${encodeURIComponent(jobId)}`, { headers });
  }

  /**
   * Wait until the job ends, in bounded waits of `waitS` each (Prefer: wait).
   * @param {string} jobId
   * @param {{waitS?: number, timeoutS?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<Job>}
   */
  async wait(jobId, options = {}) {
    const deadline = Date.now() + (options.timeoutS ?? 600) * 1000;
    for (;;) {
      const job = await this.get(jobId, { waitS: options.waitS ?? 30 });
      if (TERMINAL_STATUSES.has(job.status) || Date.now() >= deadline) return job;
      if (options.signal?.aborted) throw new DOMException("aborted", "AbortError");
    }
  }

  /**
   * Cancel a queued or running job; 409 (ApiError) if it has already ended.
   * @param {string} jobId
   * @returns {Promise<Job>}
   */
  cancel(jobId) {
    return this.client.json("POST", `/v1/jobs/${encodeURIComponent(jobId)}/cancel`);
  }

  /**
   * One page of the tenant's jobs, newest first.
   * @param {{status?: string, task?: string, conversation_id?: string, limit?: number,
   *   cursor?: string}} [filters]
   * @returns {Promise<Page>}
   */
  list(filters = {}) {
    return this.client.json("GET", `/v1/jobs${query(filters)}`);
  }

  /**
   * Follow a job's events until it ends. Uses EventSource when the job's events_url
   * carries a token (or no key is needed), else a fetch stream with the key. A stream
   * that drops is reopened (a fresh events_url is read once the old one is refused), up
   * to `maxReconnects` times in a row; every (re)connect starts with the current state.
   * @param {Job} job  a Job as answered (its id and events_url)
   * @param {{onStatus?: (job: Job) => void, onPreview?: (preview: Preview) => void,
   *   onEnd?: (job: Job|null, error: ApiError|null) => void,
   *   onReconnect?: (attempt: number) => void, maxReconnects?: number,
   *   reconnectDelayMs?: number}} handlers
   * @returns {() => void}  stops following
   */
  events(job, handlers) {
    return followJob(this.client, job, handlers);
  }
}

class ConversationsApi {
  /** @param {LlmgaClient} client */
  constructor(client) {
    this.client = client;
  }

  /**
   * @param {{limit?: number, cursor?: string}} [page]
   * @returns {Promise<Page>}  conversation summaries, latest update first
   */
  list(page = {}) {
    return this.client.json("GET", `/v1/conversations${query(page)}`);
  }

  /**
   * A conversation's turns; with `imageId` also that image's lineage (newest first).
   * @param {string} conversationId
   * @param {{imageId?: string}} [options]
   * @returns {Promise<{id: string, turns: any[], lineage: LineageStep[]|null}>}
   */
  get(conversationId, options = {}) {
    const path = `/v1/conversations/${encodeURIComponent(conversationId)}`;
    return this.client.json("GET", path + query({ image_id: options.imageId }));
  }

  /** @param {string} conversationId */
  delete(conversationId) {
    return this.client.json("DELETE", `/v1/conversations/${encodeURIComponent(conversationId)}`);
  }
}

// --- job event streams ---------------------------------------------------------------

/**
 * @param {LlmgaClient} client
 * @param {Job} job
 * @param {Parameters<JobsApi["events"]>[1]} handlers
 */
function followJob(client, job, handlers) {
  const maxReconnects = handlers.maxReconnects ?? 5;
  const delayMs = handlers.reconnectDelayMs ?? 1000;
  let eventsUrl = job.events_url;
  let stopped = false;
  let failures = 0;
  /** @type {Job|null} */ let latest = null;
  /** @type {() => void} */ let closeCurrent = () => {};

  const finish = (/** @type {ApiError|null} */ error) => {
    if (stopped) return;
    stopped = true;
    closeCurrent();
    handlers.onEnd?.(latest, error);
  };
  const onJob = (/** @type {Job} */ view) => {
    failures = 0;
    latest = view;
    handlers.onStatus?.(view);
    if (TERMINAL_STATUSES.has(view.status)) finish(null);
  };
  const onPreview = (/** @type {Preview} */ preview) => handlers.onPreview?.(preview);

  const dropped = async (/** @type {ApiError|null} */ refusal) => {
    closeCurrent();
    if (stopped) return;
    if (failures++ >= maxReconnects) {
      finish(refusal ?? new ApiError(0, "stream_dropped", "the job's event stream kept dropping"));
      return;
    }
    handlers.onReconnect?.(failures);
    await sleep(delayMs);
    try {
      // A refused token (expired) or an unknown state: read the job for a fresh URL.
      const fresh = await client.jobs.get(job.id);
      eventsUrl = fresh.events_url;
      if (TERMINAL_STATUSES.has(fresh.status)) {
        onJob(fresh);
        return;
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        finish(error);
        return;
      }
    }
    if (!stopped) connect();
  };

  const connect = () => {
    const useEventSource =
      typeof EventSource !== "undefined" && (!client.apiKey || eventsUrl.includes("token="));
    closeCurrent = useEventSource
      ? openEventSource(client.url(eventsUrl), onJob, onPreview, () => dropped(null))
      : openFetchStream(client, eventsUrl, onJob, onPreview, dropped);
  };
  connect();
  return () => finish(null);
}

/** EventSource reconnects by itself to the same URL; we close and decide ourselves. */
function openEventSource(url, onJob, onPreview, onDrop) {
  const source = new EventSource(url);
  const onData = (/** @type {MessageEvent} */ event) => onJob(JSON.parse(event.data));
  source.addEventListener("status", onData);
  source.addEventListener("progress", onData);
  source.addEventListener("preview", (event) => onPreview(JSON.parse(event.data)));
  source.onerror = () => {
    source.close();
    onDrop();
  };
  return () => source.close();
}

function openFetchStream(client, url, onJob, onPreview, onDrop) {
  const controller = new AbortController();
  (async () => {
    try {
      const response = await client.request("GET", url, {
        headers: { Accept: "text/event-stream" },
        signal: controller.signal,
      });
      for await (const { event, data } of readEventStream(response)) {
        if (event === "status" || event === "progress") onJob(JSON.parse(data));
        else if (event === "preview") onPreview(JSON.parse(data));
      }
      onDrop(null); // the stream ended without a terminal state
    } catch (error) {
      if (controller.signal.aborted) return;
      onDrop(error instanceof ApiError && error.status !== 0 ? error : null);
    }
  })();
  return () => controller.abort();
}

/**
 * Parse a text/event-stream response body into {event, data} messages (comments such as
 * `: keep-alive` are skipped).
 * @param {Response} response
 * @returns {AsyncGenerator<{event: string, data: string}>}
 */
export async function* readEventStream(response) {
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      // A "\r" that ends the chunk may be the first half of a "\r\n": wait for more.
      if (newline === buffer.length - 1 && buffer[newline] === "\r") break;
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") {
        if (data.length) yield { event: event || "message", data: data.join("\n") };
        event = "";
        data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "event") event = text;
        else if (name === "data") data.push(text);
      }
    }
  }
}

// --- small helpers -------------------------------------------------------------------

/** A fresh Idempotency-Key. */
export function newIdempotencyKey() {
  return globalThis.crypto?.randomUUID
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** @param {string} url */
function isSigned(url) {
  return /[?&](sig|X-Amz-Signature)=/.test(url);
}

/** @param {Record<string, any>} params */
function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * @param {number} ms
 * @param {AbortSignal} [signal]
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("aborted", "AbortError"));
    });
  });
}
