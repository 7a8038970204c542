// Tiny DOM helpers: the studio builds its elements with these, no framework.

/**
 * Create an element: h("button", {class: "x", onclick: fn, "aria-label": "Cancel"}, "text", child)
 * Attributes starting with "on" become listeners; false/null/undefined ones are skipped.
 * @param {string} tag
 * @param {Record<string, any>} [attributes]
 * @param {...(Node|string|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name in element && !name.includes("-") && name !== "list") {
      // @ts-ignore: a property such as value, checked, disabled, textContent
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  element.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/**
 * The element with this id (throws if the page lacks it: a wiring mistake).
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}
