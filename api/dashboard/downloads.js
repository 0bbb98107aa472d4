// Links to artifacts: they download with the API key (a plain link would get a 401).

import { apiUrl, download } from "./api.js";
import { h } from "./dom.js";

/** An <a> to an artifact that downloads it with the key (a plain link would get a 401). */
export function downloadLink(path, filename, text, what, cls = "link") {
  const a = h(
    "a",
    {
      href: apiUrl(path),
      class: cls,
      download: filename,
      // The visible text first (what speech-input users say), then what it is.
      "aria-label": `${text} (${what})`,
      "data-download": filename,
    },
    text,
  );
  a.addEventListener("click", async (ev) => {
    ev.preventDefault();
    if (a.getAttribute("aria-busy") === "true") return;
    a.setAttribute("aria-busy", "true");
    const label = a.textContent;
    a.textContent = `${label}…`;
    try {
      await download(path, filename);
    } catch (err) {
      a.title = `download failed: ${err.message}`;
    } finally {
      a.textContent = label;
      a.removeAttribute("aria-busy");
    }
  });
  return a;
}
