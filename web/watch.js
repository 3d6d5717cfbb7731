// The live event stream: GET /v1/watch read with fetch() (EventSource cannot
// send an Authorization header) and parsed as Server-Sent Events. After a drop it
// resumes where it was: `Last-Event-ID` names the revision before the last one
// seen, and the events of that last revision already handled are skipped (they
// come again in the same order), as the API describes.

import { authHeaders } from "./api.js";

// `seenAtLast` when every event of `lastRevision` was handled.
const ALL = -1;

export class Watch {
  // onEvent(event) for each event; onState("connecting" | "live" | "retrying" |
  // "unauthorized"); onReset() when events were lost (410 compacted), so pages
  // read everything again.
  constructor({ onEvent, onState, onReset }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onReset = onReset;
    this.lastRevision = null;
    this.seenAtLast = 0;
    this.stopped = false;
    this.controller = null;
    this.ready = new Promise((resolve) => (this.markReady = resolve));
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async run() {
    let backoff = 500;
    while (!this.stopped) {
      this.onState("connecting");
      let outcome;
      try {
        outcome = await this.connect();
      } catch (e) {
        outcome = this.stopped ? "stopped" : "error";
      }
      if (outcome === "stopped" || this.stopped) return;
      if (outcome === "unauthorized") {
        this.onState("unauthorized");
        this.markReady();
        return;
      }
      if (outcome === "live") backoff = 500;
      this.onState("retrying");
      this.markReady();
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10_000);
    }
  }

  async connect() {
    const headers = authHeaders();
    let skip = 0;
    if (this.lastRevision !== null && this.seenAtLast === ALL) {
      headers["Last-Event-ID"] = String(this.lastRevision);
    } else if (this.lastRevision !== null) {
      headers["Last-Event-ID"] = String(Math.max(this.lastRevision - 1, 0));
      skip = this.seenAtLast;
    }
    this.controller = new AbortController();
    const resp = await fetch("/v1/watch", { headers, signal: this.controller.signal });
    if (resp.status === 401) return "unauthorized";
    if (resp.status === 410) {
      // What we missed is gone: start again from now and let pages re-read.
      this.lastRevision = null;
      this.seenAtLast = 0;
      this.onReset();
      return "error";
    }
    if (!resp.ok || !resp.body) return "error";
    let live = false;
    const parser = new SseParser((type, data) => {
      if (type === "caught_up") {
        // The replay went through this revision: a later resume starts after
        // it, even when no event came (or none since the last one seen).
        try {
          const through = JSON.parse(data).revision;
          if (Number.isInteger(through) && (this.lastRevision === null || through >= this.lastRevision)) {
            this.lastRevision = through;
            this.seenAtLast = ALL;
          }
        } catch {
          // A caught_up without its revision: resume from the last event seen.
        }
        live = true;
        this.onState("live");
        this.markReady();
        return;
      }
      if (type === "error") return;
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        return;
      }
      if (event.revision === this.lastRevision) {
        if (this.seenAtLast === ALL) return; // handled before the drop
        if (skip > 0) {
          skip -= 1;
          return;
        }
        this.seenAtLast += 1;
      } else {
        skip = 0;
        this.lastRevision = event.revision;
        this.seenAtLast = 1;
      }
      this.onEvent(event);
    });
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
    return live ? "live" : "error";
  }
}

// Server-Sent Events framing: `field: value` lines, a blank line ends an event,
// `:` lines are comments (keep-alives).
export class SseParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.type = "";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.dispatch(this.type || "message", this.data.join("\n"));
      this.type = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
  }
}
