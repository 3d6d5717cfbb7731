// Building the page: elements from data, never from HTML strings, so text from
// the store is always shown as text.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  return build(el, {}, children);
}

let toastTimer = null;

export function toast(message, kind = "info", link = null) {
  const box = document.getElementById("toast");
  replace(box, h("div", { class: `toast ${kind}` }, message, link ? [" ", link] : null));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.replaceChildren(), 8000);
}

// A status chip: the colour comes from the status's class.
export function chip(status, text) {
  return h("span", { class: `chip st st-${status || "none"}`, dataset: { status: status || "" } }, text || status || "—");
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", { text: title }), ...children);
}

export function note(...children) {
  return h("p", { class: "note" }, ...children);
}

export function errorBox(err) {
  return h("p", { class: "error-box" }, err.message || String(err));
}

// Runs `load` at most once at a time; calls that come while it runs make one
// more run after it (events often come in bursts).
export function coalesce(load) {
  let running = false;
  let again = false;
  return async function trigger() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await load();
      } while (again);
    } finally {
      running = false;
    }
  };
}

// A table whose rows become labelled cards on a narrow screen.
export function table(headers, rows, attrs = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: `grid ${attrs.class || ""}` },
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { text: t })))),
      h(
        "tbody",
        {},
        rows.map((r) => {
          const tr = r.row || h("tr", r.attrs || {});
          r.cells.forEach((c, i) => tr.append(h("td", { "data-label": headers[i] }, c)));
          return tr;
        }),
      ),
    ),
  );
}
