/** Building DOM nodes and writing to them: the helpers the page's panels share. */

/** A new element with a class and attributes; `i18n` sets the translation key. */
export function el(tag, className, attrs = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "i18n") node.dataset.i18n = value;
    else node.setAttribute(name, value);
  }
  return node;
}

/**
 * Show `text` in an element, writing to the page only when it changed: every write makes
 * the browser recompute style and layout and repaint (even of the same text), and live
 * panels are updated several times a second. A lone text node is changed in place rather
 * than replaced, which leaves nothing for the garbage collector.
 */
export function setText(node, text) {
  const only = node.firstChild;
  if (only && only === node.lastChild && only.nodeType === 3 /* a text node */) {
    if (only.data !== text) only.data = text;
  } else if (node.textContent !== text) {
    node.textContent = text;
  }
}

/** Set a property that reflects an attribute (hidden, disabled, title, className, ariaLabel,
 * an entry of dataset) only when it changes, for the same reason as setText. */
export function setProperty(node, name, value) {
  if (node[name] !== value) node[name] = value;
}

/** The page's one hover box (position: fixed), made on first use. */
export function tooltip() {
  let tip = document.getElementById("tooltip");
  if (!tip) {
    tip = el("div", "tooltip", { id: "tooltip" });
    document.body.append(tip);
  }
  return tip;
}

/** Show `text` in the hover box beside the pointer, on whichever side keeps it on screen. */
export function showTooltip(text, event) {
  const tip = tooltip();
  tip.textContent = text;
  tip.hidden = false;
  const { width, height } = tip.getBoundingClientRect();
  const right = event.clientX + 12 + width > innerWidth;
  const below = event.clientY + 12 + height <= innerHeight;
  tip.style.left = `${right ? Math.max(0, event.clientX - 12 - width) : event.clientX + 12}px`;
  tip.style.top = `${below ? event.clientY + 12 : Math.max(0, event.clientY - 12 - height)}px`;
}
