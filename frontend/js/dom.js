/** Building DOM nodes: the one helper the page's panels share. */

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
