// The console's shell: who is signed in, the live event stream, and the hash
// routes (#/jobs, #/jobs/NAME, #/executions/ID, #/workflows, #/workflows/NAME,
// #/runs/ID, #/targets, #/ci, #/cluster, #/signin). Each page is a function
// that fills `main` and returns {onEvent(event), dispose()}.

import { ApiError, session, setToken, whoami } from "./api.js";
import { h, replace, errorBox } from "./dom.js";
import { Watch } from "./watch.js";
import { clusterPage } from "./pages/cluster.js";
import { jobsPage } from "./pages/jobs.js";
import { jobPage } from "./pages/job.js";
import { executionPage } from "./pages/execution.js";
import { workflowsPage, workflowPage, runPage } from "./pages/workflows.js";
import { targetsPage } from "./pages/targets.js";
import { ciPage } from "./pages/ci.js";
import { signinPage } from "./pages/signin.js";

const ROUTES = [
  [/^jobs$/, "jobs", () => jobsPage],
  [/^jobs\/([^/]+)$/, "jobs", (m) => (ctx) => jobPage(ctx, decodeURIComponent(m[1]))],
  [/^executions\/([^/]+)$/, "jobs", (m) => (ctx) => executionPage(ctx, decodeURIComponent(m[1]))],
  [/^workflows$/, "workflows", () => workflowsPage],
  [/^workflows\/([^/]+)$/, "workflows", (m) => (ctx) => workflowPage(ctx, decodeURIComponent(m[1]))],
  [/^runs\/([^/]+)$/, "workflows", (m) => (ctx) => runPage(ctx, decodeURIComponent(m[1]))],
  [/^targets$/, "targets", () => targetsPage],
  [/^ci$/, "ci", () => ciPage],
  [/^cluster$/, "cluster", () => clusterPage],
];

const main = document.getElementById("main");
let current = null;
let watch = null;

function showRole() {
  const role = document.getElementById("role");
  role.dataset.role = session.role || "";
  if (!session.role) {
    replace(role);
  } else if (!session.auth) {
    replace(role, h("span", { class: "badge admin", title: "the server holds no token: everyone is admin" }, "admin · no auth"));
  } else {
    replace(role, h("span", { class: `badge ${session.role}`, title: `signed in with token ${session.name}` }, `${session.role} · ${session.name}`));
  }
  document.getElementById("signout").hidden = !(session.auth && session.token);
}

function setLive(state) {
  const live = document.getElementById("live");
  live.dataset.state = state;
  live.title = `live updates: ${state}`;
  if (state === "unauthorized") signedOut();
}

function startWatch() {
  if (watch) watch.stop();
  watch = new Watch({
    onEvent: (ev) => current && current.onEvent && current.onEvent(ev),
    onState: setLive,
    onReset: () => route(),
  }).start();
  return watch.ready;
}

function signedOut() {
  if (watch) watch.stop();
  watch = null;
  session.role = null;
  showRole();
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else route();
}

function route() {
  if (current && current.dispose) current.dispose();
  current = null;
  const path = location.hash.replace(/^#\/?/, "");
  if (path === "signin" || !session.role) {
    setNav("");
    replace(main);
    current = signinPage({ main, onSignedIn: signedIn });
    return;
  }
  for (const [re, nav, make] of ROUTES) {
    const m = path.match(re);
    if (m) {
      setNav(nav);
      replace(main);
      current = make(m)({ main });
      return;
    }
  }
  location.replace("#/jobs");
}

function setNav(page) {
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
}

async function signedIn() {
  showRole();
  await Promise.race([startWatch(), new Promise((r) => setTimeout(r, 3000))]);
  const back = sessionStorage.getItem("rota.after-signin") || "#/jobs";
  sessionStorage.removeItem("rota.after-signin");
  if (location.hash === back) route();
  else location.hash = back;
}

async function boot() {
  document.getElementById("signout").addEventListener("click", () => {
    setToken(null);
    signedOut();
  });
  window.addEventListener("rota:unauthorized", () => {
    if (session.role) signedOut();
  });
  window.addEventListener("hashchange", route);
  try {
    await whoami();
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      replace(main, errorBox(e));
      return;
    }
    if (location.hash && location.hash !== "#/signin") sessionStorage.setItem("rota.after-signin", location.hash);
    setToken(null);
    signedOut();
    return;
  }
  showRole();
  await Promise.race([startWatch(), new Promise((r) => setTimeout(r, 3000))]);
  route();
}

boot();
