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
