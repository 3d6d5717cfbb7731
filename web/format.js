// Times, durations and schedules in words.

export function time(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function ago(ts) {
  if (!ts) return "—";
  const s = Math.round((Date.parse(ts) - Date.now()) / 1000);
  const abs = Math.abs(s);
  const [n, unit] =
    abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.round(abs / 60), "min"] : abs < 86400 ? [Math.round(abs / 3600), "h"] : [Math.round(abs / 86400), "d"];
  return s >= 0 ? `in ${n} ${unit}` : `${n} ${unit} ago`;
}

export function durationMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// How long an execution ran (its final attempt); null when it did not start
// or has not ended.
export function execMs(e) {
  if (!e || !e.started_at || !e.finished_at) return null;
  return Math.max(Date.parse(e.finished_at) - Date.parse(e.started_at), 0);
}

export function shortId(id) {
  return id ? `${id.slice(0, 4)}…${id.slice(-6)}` : "—";
}

const NAMED = {
  "@yearly": "once a year (1 Jan, 00:00)",
  "@annually": "once a year (1 Jan, 00:00)",
  "@monthly": "on the 1st of every month at 00:00",
  "@weekly": "every Sunday at 00:00",
  "@daily": "every day at 00:00",
  "@midnight": "every day at 00:00",
  "@hourly": "every hour, on the hour",
};

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

function pad(n) {
  return String(n).padStart(2, "0");
}

// The common cron shapes in words; anything else is shown as the expression.
export function cronWords(expr) {
  const e = expr.trim();
  if (NAMED[e]) return NAMED[e];
  let f = e.split(/\s+/);
  let sec = "0";
  if (f.length === 6) [sec, ...f] = f;
  if (f.length !== 5) return `cron ${e}`;
  const [min, hour, dom, mon, dow] = f;
  const num = (x) => /^\d+$/.test(x);
  const step = (x) => (x.match(/^\*\/(\d+)$/) || [])[1];
  const anyDay = dom === "*" && mon === "*";
  if (sec !== "0" && step(sec) && [min, hour, dom, mon, dow].every((x) => x === "*")) return `every ${step(sec)} seconds`;
  if (sec === "0" || f.length === 5) {
    if (step(min) && hour === "*" && anyDay && dow === "*") return `every ${step(min)} minutes`;
    if (min === "*" && hour === "*" && anyDay && dow === "*") return "every minute";
    if (num(min) && hour === "*" && anyDay && dow === "*") return `every hour at :${pad(min)}`;
    if (num(min) && step(hour) && anyDay && dow === "*") return `every ${step(hour)} hours at :${pad(min)}`;
    if (num(min) && num(hour)) {
      const at = `at ${pad(hour)}:${pad(min)}`;
      if (anyDay && dow === "*") return `every day ${at}`;
      if (anyDay && dow === "1-5") return `weekdays ${at}`;
      if (anyDay && num(dow)) return `every ${DAYS[Number(dow)]} ${at}`;
      if (num(dom) && mon === "*" && dow === "*") return `on day ${dom} of every month ${at}`;
    }
  }
  return `cron ${e}`;
}

export function scheduleWords(s) {
  if (!s) return "—";
  if (s.cron !== undefined) {
    const tz = s.timezone && s.timezone !== "UTC" ? ` (${s.timezone})` : " (UTC)";
    return cronWords(s.cron) + tz;
  }
  if (s.every) return `every ${s.every}`;
  if (s.at) return `once at ${time(s.at)}`;
  if (s.after) return `once, ${s.after} after creation`;
  if (s.manual) return "by hand only";
  if (s.on) return `on event ${s.on.event}`;
  return JSON.stringify(s);
}

export const ENDED = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "lost"];

export function ended(status) {
  return ENDED.includes(status);
}
