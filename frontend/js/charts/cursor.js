/** The shared step cursor: hovering any time chart shows the same step on all of them. */

export function createCursorBus(requestFrame = (fn) => requestAnimationFrame(fn)) {
  const listeners = new Set();
  let step = null;
  let pending = false;
  return {
    /** Move the cursor to `step` (null hides it); listeners hear once per animation frame. */
    set(next) {
      if (next === step) return;
      step = next;
      if (pending) return;
      pending = true;
      requestFrame(() => {
        pending = false;
        for (const listener of listeners) listener(step);
      });
    },
    get step() {
      return step;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** Follow Plotly's hover on a chart: the hovered x (a step) moves the shared cursor. */
export function followHover(element, bus) {
  element.on("plotly_hover", (event) => {
    const x = event?.points?.[0]?.x;
    if (typeof x === "number") bus.set(x);
  });
  element.on("plotly_unhover", () => bus.set(null));
}
