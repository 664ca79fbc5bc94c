// The view's shared helpers. Every text from a run is set with textContent
// (or a text node), never parsed as HTML.
"use strict";

const Gage = (() => {
  document.addEventListener("securitypolicyviolation", (e) => {
    console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
  });

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const STATUS = /^[a-z-]+$/;

  function statusSpan(status) {
    const span = el("span", { class: "status" , text: status });
    if (STATUS.test(status)) span.classList.add(`status-${status}`);
    return span;
  }

  function runHref(id) {
    return `/runs/${encodeURIComponent(id)}`;
  }

  function runLink(id, name) {
    return id ? el("a", { href: runHref(id), text: name }) : document.createTextNode(name);
  }

  function actionsToken() {
    const meta = document.querySelector('meta[name="gage-actions"]');
    return meta ? meta.content : null;
  }

  async function act(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Gage-Actions": actionsToken() || "" },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    return { ok: response.ok, status: response.status, data };
  }

  // An event stream; `handlers` maps event names to functions of the parsed data.
  function live(url, handlers) {
    const source = new EventSource(url);
    const dot = document.getElementById("live");
    source.addEventListener("open", () => dot && dot.classList.add("on"));
    source.addEventListener("error", () => dot && dot.classList.remove("on"));
    for (const [name, handler] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => handler(JSON.parse(event.data), event));
    }
    return source;
  }

  return { el, statusSpan, runHref, runLink, actionsToken, act, live };
})();
