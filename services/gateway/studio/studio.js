// The studio page: wires the API client, the key, the composer, the job cards, the working
// image and the lineage tree together. Each concern lives in its own module.

import { LlmgaClient } from "./api.js";
import { Transcript } from "./chat.js";
import { byId } from "./dom.js";
import { describeError } from "./errors.js";
import { JobCard } from "./jobs.js";
import { LineageTree } from "./lineage.js";
import { Workspace } from "./workspace.js";

// sessionStorage: the key lives as long as this tab, never on disk across sessions.
const KEY_STORAGE = "llmga.apiKey";
const SIZED_BY_IMAGE = new Set(["inpaint", "outpaint", "edit"]);
const TASK_HINTS = {
  t2i: "The assistant writes generation prompts from your message; each becomes a job.",
  similar: "The assistant describes the image; each description draws a new one.",
  inpaint: "Paint the region to regenerate on the image, then say what goes there.",
  outpaint: "Drag the sides of the image outwards, then describe the wider scene.",
  edit: "Type an instruction, e.g. “make it night”: the job shows the source and target captions.",
  controlnet: "The image's edges steer a new picture of what you describe.",
};

const api = new LlmgaClient({
  apiKey: sessionStorage.getItem(KEY_STORAGE),
  onRetry: (error, waitS) => setBusy(`${describeError(error)} Retrying automatically…`),
});
const transcript = new Transcript(byId("transcript"));
const lineage = new LineageTree(api, byId("lineage"), byId("lineage-chain"), (image) => workspace.use(image));
const workspace = new Workspace(api, {
  onImage: (image) => {
    if (image) {
      lineage.addUpload(image);
      clearError(); // an earlier refused upload is no longer the news
    }
    setBusy(image ? `Working on ${image.id}.` : "");
  },
  onTool: (task) => selectTask(task),
  onError: showError,
  onBusy: setBusy,
});
/** @type {string|null} */
let conversationId = null;

// --- API key -------------------------------------------------------------------------

const keyInput = /** @type {HTMLInputElement} */ (byId("api-key"));
function showKeyState() {
  byId("key-state").textContent = api.apiKey ? "Key in use (kept in this tab only)." : "No key.";
}
byId("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  api.apiKey = key || null;
  keyInput.value = "";
  clearError();
  showKeyState();
});
byId("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  api.apiKey = null;
  showKeyState();
});
showKeyState();

// --- messages ------------------------------------------------------------------------

/** @param {unknown} error */
function showError(error) {
  const alert = byId("alert");
  alert.textContent = error instanceof Error && !("status" in error) ? error.message : describeError(error);
  alert.hidden = false;
}
function clearError() {
  byId("alert").hidden = true;
  byId("alert").textContent = "";
}
/** @param {string} text */
function setBusy(text) {
  byId("busy").textContent = text;
}

// --- composer ------------------------------------------------------------------------

const taskSelect = /** @type {HTMLSelectElement} */ (byId("task"));
const message = /** @type {HTMLTextAreaElement} */ (byId("message"));

/** @param {string} task */
function selectTask(task) {
  taskSelect.value = task;
  workspace.showTools(task);
  byId("task-hint").textContent = TASK_HINTS[/** @type {keyof TASK_HINTS} */ (task)];
  message.placeholder = task === "edit" ? "Instruction, e.g. make it night" : "Describe what you want…";
}
taskSelect.addEventListener("change", () => selectTask(taskSelect.value));
selectTask("t2i");

/**
 * The generation settings that are filled in, as request fields for `task`.
 * @param {string} task
 */
function generationOptions(task) {
  const number = (/** @type {string} */ id) => {
    const value = /** @type {HTMLInputElement} */ (byId(id)).value;
    return value === "" ? undefined : Number(value);
  };
  /** @type {Record<string, any>} */
  const options = {
    steps: number("opt-steps"),
    seed: number("opt-seed"),
    guidance_scale: number("opt-guidance"),
  };
  if (!SIZED_BY_IMAGE.has(task)) Object.assign(options, { width: number("opt-width"), height: number("opt-height") });
  if (task !== "edit") options.n = number("opt-n");
  if (task === "inpaint" || task === "outpaint") {
    options.strength = number("opt-strength");
    options.restore = /** @type {HTMLInputElement} */ (byId("opt-restore")).checked;
  }
  if (task === "controlnet") {
    options.control = { preprocessed: /** @type {HTMLInputElement} */ (byId("opt-preprocessed")).checked };
  }
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}

message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    byId("composer").requestSubmit();
  }
});

byId("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = message.value.trim();
  if (!text) return;
  const task = taskSelect.value;
  const checked = workspace.inputsFor(task);
  if ("missing" in checked) {
    showError(new Error(checked.missing));
    return;
  }
  const request = { message: text, ...generationOptions(task), ...checked.inputs };
  if (conversationId) request.conversation_id = conversationId;
  if (task !== "t2i" && workspace.image) Object.assign(request, { task, images: [{ id: workspace.image.id }] });

  clearError();
  const send = /** @type {HTMLButtonElement} */ (byId("send"));
  send.disabled = true;
  message.value = "";
  transcript.addUser(text, task, workspace.image && task !== "t2i" ? workspace.image.id : null);
  const turn = transcript.addAssistant();
  try {
    const result = await api.chat(request, { onDelta: (delta) => turn.appendText(delta) });
    conversationId = result.conversation_id;
    lineage.conversationId = conversationId;
    turn.finish(result);
    for (const job of result.jobs) turn.addJob(jobCard(job).element);
  } catch (error) {
    turn.fail(describeError(error));
    showError(error);
    message.value = text; // nothing was stored: the same message can be sent again
  } finally {
    send.disabled = false;
  }
});

/** @param {import("./api.js").Job} job */
function jobCard(job) {
  lineage.addJob(job);
  const card = new JobCard(api, job, {
    onImage: (image) => workspace.use(image),
    onDone: (view) => {
      lineage.addJob(view); // a re-run is outside the conversation: keep its final view
      lineage.refresh().catch(showError);
    },
    onRerun: (rerun) => card.element.after(jobCard(rerun).element),
    options: () => generationOptions(card.job.task),
    onError: showError,
  });
  return card;
}

byId("new-conversation").addEventListener("click", () => {
  conversationId = null;
  lineage.conversationId = null;
  byId("transcript").replaceChildren();
  lineage.refresh().catch(showError);
  message.focus();
});
