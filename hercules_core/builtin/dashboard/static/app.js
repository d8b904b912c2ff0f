"use strict";
// The Hercules dashboard: three views over the REST API, chosen by the URL's hash.
//   #/cluster          chunkservers, totals, under-replicated and missing chunks (refreshes itself)
//   #/files/<dir>      a directory: navigate, upload (with progress), download, delete, rename, snapshot
//   #/file/<path>      a file: size, chunks, each chunk's replicas, primary and version
const API = "/api/v1";
const REFRESH_MS = 1000;
const view = document.getElementById("view");
let timer = null;
const progress = { loaded: 0, total: 1 };  // the last upload's, kept across re-rendering the listing

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function filesUrl(path) { return API + "/files" + path.split("/").map(encodeURIComponent).join("/"); }
function join(dir, name) { return (dir === "/" ? "" : dir) + "/" + name; }
function parent(path) { const p = path.slice(0, path.lastIndexOf("/")); return p || "/"; }
// A gateway with HERCULES_AUTH_FILE wants a bearer token: asked for on the first 401, kept for the tab.
const TOKEN_KEY = "hercules-token";
class Unauthenticated extends Error {}
function auth() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}
async function api(method, url, body) {
  const init = { method, headers: auth() };
  if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const r = await fetch(url, init);
  const data = await r.json();
  if (r.status === 401) throw new Unauthenticated(data.error.message);
  if (!r.ok) throw new Error(data.error ? data.error.message : r.statusText);
  return data;
}
function download(path, name) {
  // A plain link when no token is needed; with one, fetched with it and saved from a blob.
  return el("a", { href: filesUrl(path), download: name, class: "download", onclick: e => {
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    e.preventDefault();
    fetch(filesUrl(path), { headers: auth() }).then(r => r.ok ? r.blob() : Promise.reject(new Error(r.statusText)))
      .then(blob => {
        const url = URL.createObjectURL(blob);
        el("a", { href: url, download: name }).click();
        setTimeout(() => URL.revokeObjectURL(url), 1000);
      }).catch(err => say(err.message, true));
  } }, "download");
}
function showLogin(message) {
  const input = el("input", { type: "password", id: "token-input", size: 40, placeholder: "bearer token" });
  const use = () => { sessionStorage.setItem(TOKEN_KEY, input.value.trim()); route(); };
  input.addEventListener("keydown", e => { if (e.key === "Enter") use(); });
  view.replaceChildren(el("h2", {}, "Sign in"), el("p", {}, message),
    el("div", { class: "toolbar" }, input, el("button", { id: "token-button", onclick: use }, "Use token")));
}
function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map(h => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}
function say(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text; s.className = isError ? "error" : "";
}

// --- cluster -----------------------------------------------------------------------------
async function showCluster() {
  const c = await api("GET", API + "/cluster");
  const alive = c.chunkservers.filter(s => s.state === "alive").length;
  const cap = c.chunkservers.reduce((a, s) => a + s.capacity_bytes, 0);
  const used = c.chunkservers.reduce((a, s) => a + s.used_bytes, 0);
  const chunks = c.chunkservers.reduce((a, s) => a + s.chunk_count, 0);
  const total = (label, value, id, warn) => el("div", { id, class: warn ? "warn" : "" }, el("b", {}, value), label);
  const rows = c.chunkservers.map(s => {
    const pct = s.capacity_bytes ? Math.min(100, 100 * s.used_bytes / s.capacity_bytes) : 0;
    return el("tr", { class: "server", "data-server": s.server_id, "data-state": s.state },
      el("td", {}, s.server_id), el("td", {}, el("code", {}, s.address)),
      el("td", { class: "state state-" + s.state }, s.state), el("td", {}, s.phi.toFixed(2)),
      el("td", {}, el("div", { class: "bar", title: pct.toFixed(1) + "%" }, el("div", { style: `width:${pct}%` })),
        bytes(s.used_bytes) + " of " + bytes(s.capacity_bytes)),
      el("td", {}, s.chunk_count));
  });
  view.replaceChildren(el("h2", {}, "Cluster"),
    el("div", { class: "totals" },
      total("chunkservers alive", `${alive} / ${c.chunkservers.length}`, "total-alive"),
      total("used of capacity", `${bytes(used)} / ${bytes(cap)}`, "total-used"),
      total("chunk replicas", chunks, "total-chunks"),
      total("under-replicated chunks", c.under_replicated, "total-under", c.under_replicated > 0),
      total("missing chunks", c.missing_chunks, "total-missing", c.missing_chunks > 0),
      total("chunk size · replication", `${bytes(c.chunk_size)} · ${c.replication}`, "total-config")),
    table(["server", "address", "state", "phi", "capacity", "chunks"], rows));
  say("updated " + new Date().toLocaleTimeString());
}

// --- file browser ------------------------------------------------------------------------
function crumbs(path) {
  const parts = path.split("/").filter(Boolean);
  const links = [el("a", { href: "#/files/" }, "/")];
  parts.forEach((p, i) => links.push(el("a", { href: "#/files/" + parts.slice(0, i + 1).join("/") }, p), "/"));
  return el("div", { class: "crumbs" }, ...links);
}
async function act(work, done) {
  try { await work(); say(done); } catch (e) { say(e.message, true); }
  route();
}
function upload(dir, file, bar) {
  // XMLHttpRequest, not fetch: only it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", filesUrl(join(dir, file.name)) + "?overwrite=true");
    for (const [k, v] of Object.entries(auth())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = e => {
      if (!e.lengthComputable) return;
      progress.loaded = e.loaded; progress.total = e.total;
      bar.max = e.total; bar.value = e.loaded;
    };
    xhr.onload = () => xhr.status < 300 ? resolve() :
      reject(new Error(JSON.parse(xhr.responseText || "{}").error?.message || xhr.statusText));
    xhr.onerror = () => reject(new Error("upload failed"));
    xhr.send(file);
  });
}
async function showFiles(dir) {
  const listing = await api("GET", API + "/list?path=" + encodeURIComponent(dir));
  const input = el("input", { type: "file", id: "upload-input", multiple: "" });
  const bar = el("progress", { id: "upload-progress", value: progress.loaded, max: progress.total });
  const uploadButton = el("button", { id: "upload-button", onclick: () => act(async () => {
    for (const f of input.files) await upload(dir, f, bar);
  }, "uploaded") }, "Upload");
  const mkdir = el("button", { id: "mkdir-button", onclick: () => {
    const name = prompt("New directory name");
    if (name) act(() => api("POST", API + "/mkdir", { path: join(dir, name) }), "created " + name);
  } }, "New directory");
  const rows = listing.entries.map(e => {
    const link = e.is_dir ? el("a", { href: "#/files" + e.path }, e.name + "/") : el("a", { href: "#/file" + e.path }, e.name);
    const rename = () => { const to = prompt("Rename to", e.path); if (to && to !== e.path)
      act(() => api("PATCH", API + "/rename", { source: e.path, target: to }), "renamed"); };
    const snapshot = () => { const to = prompt("Snapshot to", e.path + ".snapshot"); if (to)
      act(() => api("POST", API + "/snapshot", { source: e.path, target: to }), "snapshot made"); };
    const remove = () => { if (confirm("Delete " + e.path + "?"))
      act(() => api("DELETE", API + "/delete?recursive=true&path=" + encodeURIComponent(e.path)), "deleted"); };
    return el("tr", { class: "entry", "data-path": e.path }, el("td", {}, link), el("td", {}, e.is_dir ? "" : bytes(e.size)),
      el("td", {}, e.is_dir ? "" : e.chunk_count), el("td", {}, new Date(e.modified * 1000).toLocaleString()),
      el("td", {}, e.is_dir ? "" : download(e.path, e.name), " ",
        el("button", { onclick: rename }, "rename"), el("button", { onclick: snapshot }, "snapshot"),
        el("button", { class: "delete", onclick: remove }, "delete")));
  });
  view.replaceChildren(el("h2", {}, "Files"), crumbs(dir),
    el("div", { class: "toolbar" }, input, uploadButton, bar, mkdir),
    table(["name", "size", "chunks", "modified", ""], rows));
}

// --- one file ----------------------------------------------------------------------------
async function showFile(path) {
  const info = await api("GET", API + "/fileinfo?path=" + encodeURIComponent(path));
  const chunks = [];
  for (let i = 0; i < info.chunk_count; i++) {
    chunks.push(await api("GET", `${API}/chunk/handle?path=${encodeURIComponent(path)}&index=${i}`));
  }
  const rows = chunks.map(c => el("tr", { class: "chunk" }, el("td", {}, c.index), el("td", {}, c.handle),
    el("td", {}, c.version), el("td", {}, c.replicas.join(", ")), el("td", {}, c.primary || "none"),
    el("td", {}, c.lease_expires ? new Date(c.lease_expires * 1000).toLocaleTimeString() : "")));
  view.replaceChildren(el("h2", {}, path), crumbs(parent(path)),
    table(["size", "chunks", "replication", "modified"], [el("tr", {}, el("td", { id: "file-size" }, info.size + " bytes"),
      el("td", {}, info.chunk_count), el("td", {}, info.replication), el("td", {}, new Date(info.modified * 1000).toLocaleString()))]),
    el("p", {}, download(path, info.name)),
    el("h3", {}, "Chunks"), table(["index", "handle", "version", "replicas", "primary", "lease until"], rows));
}

// --- routing -----------------------------------------------------------------------------
async function route() {
  clearInterval(timer);
  const hash = decodeURIComponent(location.hash.slice(1)) || "/cluster";
  try {
    if (hash.startsWith("/files")) await showFiles(hash.slice("/files".length) || "/");
    else if (hash.startsWith("/file/")) await showFile(hash.slice("/file".length));
    else {
      await showCluster();
      timer = setInterval(() => showCluster().catch(e => {
        if (e instanceof Unauthenticated) route(); else say(e.message, true);
      }), REFRESH_MS);
    }
  } catch (e) {
    clearInterval(timer);
    if (e instanceof Unauthenticated) showLogin(e.message); else say(e.message, true);
  }
}
window.addEventListener("hashchange", route);
route();
