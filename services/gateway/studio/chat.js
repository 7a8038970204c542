// The conversation: the user's turns, the assistant's reply streaming in, the generation
// prompts it wrote, and the job cards of each turn.

import { h } from "./dom.js";

export class Transcript {
  /** @param {HTMLElement} element  the transcript list (aria-live) */
  constructor(element) {
    this.element = element;
  }

  /**
   * @param {string} text
   * @param {string} task
   * @param {string|null} imageId  the image the turn works on
   */
  addUser(text, task, imageId) {
    const detail = task === "t2i" ? "" : ` · ${task}${imageId ? ` on ${imageId}` : ""}`;
    this.append(h("li", { class: "turn user" }, h("span", { class: "who" }, `You${detail}`), h("p", {}, text)));
  }

  /** A reply being written: returns the handle the stream fills in. */
  addAssistant() {
    const text = h("p", { class: "reply", "aria-busy": "true" });
    const prompts = h("ol", { class: "generation-prompts", "aria-label": "Generation prompts" });
    const jobs = h("div", { class: "jobs" });
    const turn = h("li", { class: "turn assistant" }, h("span", { class: "who" }, "Assistant"), text, prompts, jobs);
    this.append(turn);
    return new AssistantTurn(turn, text, prompts, jobs, () => this.scroll());
  }

  /** @param {HTMLElement} item */
  append(item) {
    this.element.append(item);
    this.scroll();
  }

  scroll() {
    this.element.scrollTop = this.element.scrollHeight;
  }
}

export class AssistantTurn {
  /**
   * @param {HTMLElement} turn
   * @param {HTMLElement} text
   * @param {HTMLElement} prompts
   * @param {HTMLElement} jobs
   * @param {() => void} scroll
   */
  constructor(turn, text, prompts, jobs, scroll) {
    this.turn = turn;
    this.text = text;
    this.prompts = prompts;
    this.jobs = jobs;
    this.scroll = scroll;
  }

  /** @param {string} delta */
  appendText(delta) {
    this.text.textContent += delta;
    this.scroll();
  }

  /** @param {import("./api.js").ChatResponse} result */
  finish(result) {
    this.text.removeAttribute("aria-busy");
    this.text.textContent = result.reply || (result.jobs.length ? "" : "(no reply)");
    this.prompts.replaceChildren(...result.generation_prompts.map((prompt) => h("li", {}, prompt)));
    if (result.source_caption) {
      this.turn.insertBefore(
        h("p", { class: "source-caption" }, `The image shows: ${result.source_caption}`),
        this.prompts,
      );
    }
  }

  /** @param {string} message */
  fail(message) {
    this.text.removeAttribute("aria-busy");
    this.turn.classList.add("failed");
    this.text.textContent = message;
  }

  /** @param {HTMLElement} card */
  addJob(card) {
    this.jobs.append(card);
    this.scroll();
  }
}
