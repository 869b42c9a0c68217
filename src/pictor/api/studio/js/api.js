// The studio's only way to the server: Pictor's public HTTP API, with the API key from sessionStorage.

const KEY_NAME = "pictor.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

/** Signed in: a key is kept, or an empty one for a server started with --keyless. */
export function signedIn() {
  return sessionStorage.getItem(KEY_NAME) !== null;
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function clearApiKey() {
  sessionStorage.removeItem(KEY_NAME);
}

/** An API error in the upstream shape: message, code, param (and moderation details for a blocked prompt). */
export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `The request failed (${status}).`);
    this.name = "ApiError";
    this.status = status;
    this.code = error?.code || null;
    this.param = error?.param || null;
    this.details = error?.moderation_details || null;
  }
}

function headers(extra = {}) {
  const all = { ...extra };
  const key = apiKey();
  if (key) all.authorization = `Bearer ${key}`;
  return all;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: the status line says enough
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent("pictor:unauthorized"));
  const error = body?.error || { message: `${response.status} ${response.statusText}` };
  if (response.status === 429 && response.headers.get("retry-after")) {
    error.message += ` Try again in ${response.headers.get("retry-after")} s.`;
  }
  return new ApiError(response.status, error);
}

/** A JSON request; resolves to the parsed body, rejects with ApiError. */
export async function request(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** The bytes behind a path (an image's content), as a Blob. */
export async function blob(path, signal) {
  const response = await fetch(path, { headers: headers(), signal });
  if (!response.ok) throw await failure(response);
  return response.blob();
}

/**
 * POST a JSON body with `stream: true` and yield the server-sent events' data objects as they arrive.
 * Aborting `signal` closes the connection, which makes the server drop the work it has not done yet.
 */
export async function* stream(path, json, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "content-type": "application/json", accept: "text/event-stream" }),
    body: JSON.stringify({ ...json, stream: true }),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split("\n").filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart()).join("\n");
        if (!data) continue; // a keep-alive comment
        const event = JSON.parse(data);
        if (event.type === "error") throw new ApiError(400, event.error || event);
        yield event;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

export function dataUrl(b64, format = "png") {
  return `data:image/${format};base64,${b64}`;
}

export function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** Any image URL (data:, a signed link) as a data URL, for requests that take images inline. */
export async function urlAsDataUrl(url) {
  if (url.startsWith("data:")) return url;
  const response = await fetch(url);
  if (!response.ok) throw await failure(response);
  return readAsDataUrl(await response.blob());
}

/** The text an error should show: a blocked prompt says which rule of the policy blocked it. */
export function describeError(error) {
  // A blocked prompt: the policy's own message names the rule, category and level (never the words).
  if (error instanceof ApiError && error.code === "moderation_blocked") return error.message;
  if (error instanceof ApiError) return error.message;
  if (error instanceof TypeError) return `Could not reach the server: ${error.message}`;
  return error?.message || String(error);
}
