// Caches of names: ids are what the API returns, people recognise file and model names.

import { getJSON } from "./api.js";
import { shortId } from "./dom.js";

export const datasetNames = new Map(); // id -> Promise<dataset|null>
export const modelsById = new Map(); // id -> model (uploaded ones; "default" is per kind)

export function datasetInfo(id) {
  if (!id) return Promise.resolve(null);
  if (!datasetNames.has(id)) {
    datasetNames.set(
      id,
      getJSON(`v1/datasets/${encodeURIComponent(id)}`).catch(() => {
        datasetNames.delete(id);
        return null;
      }),
    );
  }
  return datasetNames.get(id);
}

export function modelLabel(id, kind) {
  if (!id) return "none";
  if (id === "default") return `default ${kind.toUpperCase()} network`;
  const m = modelsById.get(id);
  return m ? `${m.name} (${shortId(id)})` : shortId(id);
}

/** Forget every cached name (on sign-out: the next key may see other datasets). */
export function clearNames() {
  datasetNames.clear();
  modelsById.clear();
}
