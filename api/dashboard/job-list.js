// The sidebar's job list: filtered, paged, refreshed every few seconds while visible.

import { getJSON, getKey } from "./api.js";
import { $, $$, badge, h, MODE_NAMES, shortId } from "./dom.js";
import { fmtAgo } from "./format.js";
import { datasetInfo } from "./names.js";

const LIST_REFRESH_MS = 5000;
const JOBS_PAGE = 25;

const list = {
  filter: "",
  shown: JOBS_PAGE,
  timer: null,
  signature: "", // what the list shows; rebuilt only when it changes
  current: null, // id of the job whose page is open
};

export function startJobList() {
  clearInterval(list.timer);
  refreshJobs();
  list.timer = setInterval(() => {
    if ($("#auto-refresh").checked && document.visibilityState === "visible") refreshJobs();
  }, LIST_REFRESH_MS);
}

async function fetchJobs() {
  const params = new URLSearchParams({ limit: String(Math.min(list.shown, 100)) });
  if (list.filter) params.set("state", list.filter);
  let page = await getJSON(`v1/jobs?${params}`);
  const items = [...page.items];
  while (page.next && items.length < list.shown) {
    page = await getJSON(page.next);
    items.push(...page.items);
  }
  return { items: items.slice(0, list.shown), total: page.total };
}

export async function refreshJobs() {
  if (!getKey()) return;
  const status = $("#jobs-status");
  let result;
  try {
    result = await fetchJobs();
  } catch (err) {
    if (err.status !== 401) status.textContent = `Could not load jobs: ${err.message}`;
    return;
  }
  const { items, total } = result;
  status.textContent =
    `${total} job${total === 1 ? "" : "s"}${list.filter ? ` ${list.filter}` : ""}` +
    ` · updated ${new Date().toLocaleTimeString()}`;
  $("#jobs-more").hidden = items.length >= total;
  await Promise.all(items.map((j) => datasetInfo(j.lr_dataset)));
  // Rebuild only when something changed: a rebuild would drop keyboard focus in the list.
  const signature = JSON.stringify(
    items.map((j) => [j.id, j.state, j.progress, j.iterations_done, j.cancel_requested]),
  );
  if (signature !== list.signature) {
    list.signature = signature;
    const listNode = $("#job-list");
    const nodes = [];
    for (const job of items) nodes.push(await jobListItem(job));
    if (!items.length) {
      nodes.push(
        h("li", { class: "empty muted" }, list.filter ? "No jobs in this state." : "No jobs yet."),
      );
    }
    listNode.replaceChildren(...nodes);
  } else {
    // Relative times still move on.
    for (const job of items) {
      const ago = $(`[data-job="${job.id}"] .job-ago`);
      if (ago) ago.textContent = fmtAgo(job.created_at);
    }
  }
  markCurrentJob();
}

async function jobListItem(job) {
  const ds = await datasetInfo(job.lr_dataset);
  const done = job.iterations_done;
  const total = job.iterations_total;
  return h(
    "li",
    {},
    h(
      "a",
      { class: "job-item", href: `#/jobs/${job.id}`, "data-job": job.id },
      h(
        "span",
        { class: "job-line" },
        badge(job.state),
        h("span", { class: "job-name" }, ds ? ds.filename : `job ${shortId(job.id)}`),
      ),
      h(
        "span",
        { class: "job-line job-meta" },
        h("span", {}, `${MODE_NAMES[job.mode] || job.mode} · ${shortId(job.id)}`),
        h("span", { class: "job-ago" }, fmtAgo(job.created_at)),
      ),
      h(
        "span",
        { class: "job-line" },
        h("progress", {
          max: 1,
          value: job.progress,
          "aria-label": `progress of job ${shortId(job.id)}`,
        }),
        h("span", { class: "job-iters" }, `${done}/${total} it.`),
      ),
    ),
  );
}

export function markCurrentJob(current = list.current) {
  list.current = current;
  for (const a of $$(".job-item")) {
    if (a.dataset.job === current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

export function stopJobList() {
  clearInterval(list.timer);
  list.timer = null;
  list.signature = "";
  $("#job-list").replaceChildren();
}

/** Rebuild the list now, even if nothing seems to have changed (a job was just submitted). */
export function reloadJobs() {
  list.signature = "";
  refreshJobs();
}

export function initJobList() {
  $("#state-filter").addEventListener("change", (ev) => {
    list.filter = ev.target.value;
    list.shown = JOBS_PAGE;
    reloadJobs();
  });
  $("#refresh-jobs").addEventListener("click", () => {
    refreshJobs();
  });
  $("#jobs-more").addEventListener("click", () => {
    list.shown += JOBS_PAGE;
    refreshJobs();
  });
}
