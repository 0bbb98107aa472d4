// SAFT dashboard: sign in, then the job list, the job form and one job's page, chosen by the
// URL's hash. Plain ES modules, no build step and no third-party code; everything goes
// through /v1. This module holds the session and the routing; each part has its own module.

import { clearKey, getJSON, getKey, onUnauthorized, setKey } from "./api.js";
import { $, shortId } from "./dom.js";
import { clearUploads, initJobForm, loadModels } from "./job-form.js";
import { initJobList, markCurrentJob, refreshJobs, startJobList, stopJobList } from "./job-list.js";
import { JobView } from "./job-view.js";
import { clearNames } from "./names.js";
import { loadParamsForm } from "./params-form.js";

let view = null; // the JobView shown, if any

// ---- session ----------------------------------------------------------------------------

function showSignIn(message = "") {
  stopWorkspace();
  $("#workspace").hidden = true;
  $("#session").hidden = true;
  $("#signin").hidden = false;
  $("#signin-error").textContent = message;
  $("#api-key").setAttribute("aria-invalid", message ? "true" : "false");
  $("#api-key").focus();
}

function showWorkspace() {
  $("#signin").hidden = true;
  $("#workspace").hidden = false;
  $("#session").hidden = false;
  $("#whoami").textContent = `signed in with key ${shortId(getKey())}…`;
  startJobList();
  loadModels();
  loadParamsForm();
  route();
}

function stopWorkspace() {
  stopJobList();
  if (view) view.destroy();
  view = null;
  clearUploads();
  clearNames();
}

function signOut(message) {
  clearKey();
  showSignIn(message);
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $("#api-key");
  const key = input.value.trim();
  const error = $("#signin-error");
  if (!key) {
    error.textContent = "Enter your API key.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  const button = $("#signin-submit");
  button.disabled = true;
  error.textContent = "";
  try {
    await getJSON("v1/jobs?limit=1", { key });
    setKey(key);
    input.value = "";
    input.setAttribute("aria-invalid", "false");
    showWorkspace();
  } catch (err) {
    error.textContent =
      err.status === 401 ? `Sign-in failed: ${err.message}.` : `Cannot sign in: ${err.message}`;
    input.setAttribute("aria-invalid", "true");
    input.select();
  } finally {
    button.disabled = false;
  }
}

// ---- routing ----------------------------------------------------------------------------

function route() {
  if (!getKey()) return;
  const m = /^#\/jobs\/([0-9A-Za-z_-]+)$/.exec(location.hash);
  if (m) {
    if (!view || view.id !== m[1]) {
      if (view) view.destroy();
      $("#view-new").hidden = true;
      const section = $("#view-job");
      section.hidden = false;
      view = new JobView(m[1], section);
      view.start();
    }
  } else {
    if (view) view.destroy();
    view = null;
    $("#view-job").hidden = true;
    $("#view-job").replaceChildren();
    $("#view-new").hidden = false;
  }
  markCurrentJob(view ? view.id : null);
  $("#content").scrollTop = 0;
}

// ---- start ------------------------------------------------------------------------------

function init() {
  onUnauthorized(() => {
    if (getKey()) signOut("The service rejected your API key (revoked or wrong); sign in again.");
  });
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut(""));
  initJobForm();
  initJobList();
  $("#lightbox").addEventListener("click", (ev) => {
    if (ev.target === ev.currentTarget) ev.currentTarget.close(); // click on the backdrop
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && getKey()) refreshJobs();
  });
  loadParamsForm(); // public: the form is ready by the time the user has signed in

  const key = getKey();
  if (!key) {
    showSignIn();
    return;
  }
  // A stored key is checked before the workspace shows; a service that is down is not a
  // reason to sign out (the list shows the error and retries).
  getJSON("v1/jobs?limit=1", { key })
    .then(() => showWorkspace())
    .catch((err) => {
      if (err.status === 401) {
        clearKey();
        showSignIn("Your stored API key was rejected; sign in again.");
      } else showWorkspace();
    });
}

init();
