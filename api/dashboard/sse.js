// Server-sent events over fetch(): EventSource cannot send the Authorization header the API
// requires, so the stream is read from a ReadableStream and parsed here (the subset of the
// HTML event-stream format the API emits: id, event, data, retry and comment lines).

import { ApiError, request } from "./api.js";

/** Incremental parser: feed() text chunks, get back complete events. */
export class SSEParser {
  constructor() {
    this.buffer = "";
    this.reset();
    this.lastEventId = null;
    this.retry = null;
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }

  /** Returns the events completed by this chunk: [{id, event, data}] (data as text). */
  feed(chunk) {
    this.buffer += chunk;
    const out = [];
    for (;;) {
      const nl = this.buffer.indexOf("\n");
      if (nl < 0) break;
      let line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      const ev = this.line(line);
      if (ev) out.push(ev);
    }
    return out;
  }

  line(line) {
    if (line === "") {
      // A blank line ends the event; one without data (e.g. only "retry:") is not dispatched.
      if (this.id !== null) this.lastEventId = this.id;
      const ev =
        this.data.length > 0
          ? { id: this.lastEventId, event: this.event || "message", data: this.data.join("\n") }
          : null;
      this.reset();
      return ev;
    }
    if (line.startsWith(":")) return null; // keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

/**
 * Follow an event stream until `signal` aborts or `isDone()` says no reconnection is needed.
 * Reconnects after the server's `retry` delay (backing off up to 30 s on repeated failures)
 * and resumes with Last-Event-ID, so no event is lost or repeated across reconnections.
 *
 * handlers: onEvent({id, event, data}) with data parsed as JSON; onStatus(status) with
 * "connecting" | "live" | "reconnecting" | "ended" | "error"; isDone() -> bool;
 * onFatal(ApiError) for answers that retrying cannot fix (401, 404).
 */
export async function followEvents(path, handlers, signal) {
  const { onEvent, onStatus = () => {}, isDone = () => false, onFatal = () => {} } = handlers;
  let lastEventId = null;
  let retryMs = 3000;
  let failures = 0;
  while (!signal.aborted) {
    onStatus(failures ? "reconnecting" : "connecting");
    const parser = new SSEParser();
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      const resp = await request(path, { headers, signal });
      onStatus("live");
      failures = 0;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const ev of parser.feed(value)) {
          lastEventId = ev.id ?? lastEventId;
          let data = ev.data;
          try {
            data = JSON.parse(ev.data);
          } catch {
            // not JSON: hand over the text
          }
          onEvent({ id: ev.id, event: ev.event, data });
        }
        if (parser.retry !== null) retryMs = parser.retry;
      }
      if (parser.lastEventId !== null) lastEventId = parser.lastEventId;
    } catch (err) {
      if (signal.aborted || err.name === "AbortError") return;
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        onStatus("error");
        onFatal(err);
        return;
      }
      failures += 1;
    }
    if (parser.lastEventId !== null) lastEventId = parser.lastEventId;
    if (isDone()) {
      onStatus("ended");
      return;
    }
    // The server closed a stream of an unfinished job (restart, proxy timeout): resume.
    if (!failures) failures = 1;
    const delay = Math.min(retryMs * 2 ** Math.max(failures - 1, 0), 30_000);
    onStatus("reconnecting");
    await sleep(delay, signal);
  }
}
