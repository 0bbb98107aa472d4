// Calls to the SAFT API with the user's key. Every request carries `Authorization: Bearer`;
// errors become ApiError holding the RFC 9457 problem document the API answers with.

const KEY_STORAGE = "saft.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }

  /** [{field, message}] naming request fields (validation errors), possibly empty. */
  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

// sessionStorage, not localStorage: the key lives as long as the tab and is not shared with
// other tabs or left on a shared microscope PC after the browser closes.
export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

let unauthorizedHandler = () => {};

/** Called once a request with the stored key is answered 401 (key revoked or wrong). */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

/** Resolves `v1/...` (ours) and `/v1/...` (links the API returns, root path included). */
export function apiUrl(path) {
  return new URL(path, document.baseURI).href;
}

async function readProblem(resp) {
  const type = resp.headers.get("content-type") || "";
  try {
    if (type.includes("json")) {
      const body = await resp.json();
      if (body && typeof body === "object") return body;
    }
    const text = (await resp.text()).trim();
    return { title: resp.statusText, detail: text.slice(0, 300) || `HTTP ${resp.status}` };
  } catch {
    return { title: resp.statusText, detail: `HTTP ${resp.status} ${resp.statusText}` };
  }
}

function authHeaders(key, extra) {
  const headers = new Headers(extra || {});
  headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

/**
 * fetch() with the key; resolves to the Response when it is 2xx, else throws ApiError.
 * `key` overrides the stored key (signing in); a 401 for an override is not "signed out".
 */
export async function request(path, { method = "GET", json, body, headers, signal, key } = {}) {
  const useKey = key ?? getKey() ?? "";
  const h = authHeaders(useKey, headers);
  if (!h.has("Accept")) h.set("Accept", "application/json, application/problem+json");
  if (json !== undefined) {
    h.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  let resp;
  try {
    resp = await fetch(apiUrl(path), { method, headers: h, body, signal, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, {
      title: "Network error",
      detail: `cannot reach the SAFT service (${err.message})`,
    });
  }
  if (!resp.ok) {
    const problem = await readProblem(resp);
    if (resp.status === 401 && key === undefined) unauthorizedHandler(problem);
    throw new ApiError(resp.status, problem);
  }
  return resp;
}

export async function getJSON(path, options) {
  const resp = await request(path, options);
  return resp.status === 204 ? null : resp.json();
}

export function postJSON(path, json, options = {}) {
  return getJSON(path, { ...options, method: "POST", json });
}

/** An artifact as a Blob (previews, MP4, downloads: <img>/<video> cannot send the header). */
export async function getBlob(path, options) {
  const resp = await request(path, options);
  return resp.blob();
}

/**
 * POST multipart form data with upload progress (fetch() cannot report it, XHR can).
 * onProgress(fraction) is called while the body is sent. Resolves to the JSON answer.
 */
export function upload(path, formData, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl(path));
    xhr.setRequestHeader("Authorization", `Bearer ${getKey() ?? ""}`);
    xhr.setRequestHeader("Accept", "application/json, application/problem+json");
    xhr.responseType = "text";
    if (onProgress) {
      xhr.upload.onprogress = (ev) => {
        if (ev.lengthComputable && ev.total > 0) onProgress(ev.loaded / ev.total);
      };
    }
    xhr.onload = () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body);
        return;
      }
      const problem =
        body && typeof body === "object"
          ? body
          : { title: xhr.statusText, detail: `HTTP ${xhr.status} ${xhr.statusText}` };
      if (xhr.status === 401) unauthorizedHandler(problem);
      reject(new ApiError(xhr.status, problem));
    };
    xhr.onerror = () =>
      reject(new ApiError(0, { title: "Network error", detail: "the upload was interrupted" }));
    xhr.onabort = () => reject(new DOMException("upload aborted", "AbortError"));
    if (signal) signal.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(formData);
  });
}

/**
 * Save an artifact under `filename`: fetched with the key, handed to the browser through a
 * temporary object URL (a plain link would be refused with 401: it cannot carry the key).
 */
export async function download(path, filename) {
  const blob = await getBlob(path);
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has started from the URL; keep it a moment for slow browsers.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
