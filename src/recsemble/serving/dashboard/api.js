// recsemble dashboard: the API client and the small DOM helpers app.js builds the page with
// (loaded first; plain JavaScript, no build step, no CDN). API errors are thrown as ApiError
// with the route, the status and the server's message, for app.js to show in its alert bar.
"use strict";

window.recsembleApi = (() => {
  const KEY_STORAGE = "recsemble.apiKey";

  // -- DOM and formats ---------------------------------------------------------------------
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "data") Object.assign(node.dataset, value);
      else if (name === "text") node.textContent = value;
      else node[name] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  function uuid() {
    // crypto.randomUUID needs a secure context; getRandomValues works over plain http too.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20),
      hex.slice(20)].join("-");
  }

  const fmt = (value, digits = 3) =>
    value === null || value === undefined ? "—" : Number(value).toFixed(digits);
  const when = (seconds) => new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);

  // -- the API ----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function hint(status) {
    if (status === 401) return " Enter the API key above.";
    if (status === 403) return " This key may not do that: writes and model changes need the admin key.";
    return "";
  }

  async function api(method, path, body) {
    const headers = {};
    const key = localStorage.getItem(KEY_STORAGE);
    if (key) headers["X-API-Key"] = key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, `${method} ${path}: no answer from the server (${err.message})`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const error = data && data.error ? data.error : { code: "error", message: text.slice(0, 200) };
      throw new ApiError(response.status,
        `${method} ${path} → ${response.status} ${error.code}: ${error.message}.${hint(response.status)}`);
    }
    return data;
  }

  return Object.freeze({ KEY_STORAGE, ApiError, api, el, fmt, uuid, when });
})();
