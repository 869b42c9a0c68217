// The gallery (search by prompt), an image's page (C2PA summary, watermark, lineage graph, audit entry,
// download) and the verify page (drop any image: did Pictor make it, and what happened to it since).

import { blob, request } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";

export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

function list(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([term, value]) => [h("dt", { text: term }), h("dd", {}, value instanceof Node ? value : String(value))]));
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function short(hash, length = 12) {
  return hash ? `${hash.slice(0, length)}…` : "";
}

// ---- gallery -------------------------------------------------------------------------------------------------

export class Gallery {
  constructor({ showError }) {
    this.showError = showError;
    this.search = document.getElementById("gallery-search");
    this.list = document.getElementById("gallery-list");
    this.status = document.getElementById("gallery-status");
    this.timer = null;
    this.generation = 0;
    this.search.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.load(), 200);
    });
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        clearTimeout(this.timer);
        this.load();
      }
    });
  }

  async enter() {
    await this.load();
    this.search.focus();
  }

  async load() {
    const generation = ++this.generation;
    const query = this.search.value.trim();
    try {
      const page = await request(`/v1/images?limit=60&search=${encodeURIComponent(query)}`);
      if (generation !== this.generation) return;
      this.list.replaceChildren(...page.data.map((image) => h("li", { class: "gallery-item" },
        h("a", { href: `#/image/${image.id}`, "data-image": image.id },
          h("img", { src: image.url, alt: image.prompt || `${image.kind} ${image.id}`, loading: "lazy" }),
          h("span", { class: "prompt", text: image.prompt || `(${image.kind})` }),
          h("small", { text: `${image.kind} · ${image.size} · ${when(image.created)}` })))));
      const count = `${page.data.length}${page.has_more ? "+" : ""} image${page.data.length === 1 ? "" : "s"}`;
      this.status.textContent = query ? `${count} whose prompt contains "${query}".` : `${count}.`;
    } catch (error) {
      this.showError(error);
    }
  }
}

// ---- an image's page -----------------------------------------------------------------------------------------

const STATE_TEXT = {
  Trusted: "Signed by a certificate this server trusts, and the content matches the signature.",
  Valid: "The signature is valid and the content matches it, but the signer is not a trusted anchor.",
  Invalid: "The manifest does not validate: the file was changed after it was signed.",
};

function c2paSection(summary) {
  const state = summary.validation_state;
  const section = h("section", { class: "card", "aria-labelledby": "c2pa-title" },
    h("h3", { id: "c2pa-title", text: "Content credentials (C2PA)" }));
  if (!state) {
    section.append(h("p", { "data-c2pa-state": "none", text: "No C2PA manifest: this file carries no content " +
      "credentials (an upload, or metadata stripped)." }));
    return section;
  }
  const badge = h("span", { class: `badge state-${state}`, "data-c2pa-state": state, text: state });
  const actions = (summary.actions || []).map((action) => action.action + (action.digitalSourceType
    ? ` (${action.digitalSourceType.split("/").pop()})` : ""));
  const pictor = summary.pictor || {};
  section.append(
    h("p", {}, badge, " ", STATE_TEXT[state] || ""),
    list([["Signed by", summary.signer], ["Issuer", summary.issuer], ["Signed at", summary.signed_at],
      ["Claim generator", summary.claim_generator], ["Actions", actions.join(", ")],
      ["Artifact", pictor.artifact_id], ["Model", pictor.model_id], ["Weights", short(pictor.weights_hash)],
      ["Seed", pictor.seed], ["Job", pictor.job_id], ["Audit entry", pictor.audit_index],
      ["Policy version", pictor.policy_version],
      ["Made from", (summary.lineage || []).filter(Boolean).join(" ← ")]]),
  );
  if (summary.errors?.length) section.append(h("ul", { class: "errors" }, summary.errors.map((e) => h("li", { text: e }))));
  return section;
}

function watermarkSection(mark) {
  const section = h("section", { class: "card", "aria-labelledby": "wm-title" },
    h("h3", { id: "wm-title", text: "Invisible watermark" }));
  if (!mark) {
    section.append(h("p", { text: "Not checked." }));
  } else if (mark.detected) {
    section.append(h("p", { "data-watermark": "detected" },
      h("span", { class: "badge state-Trusted", text: "Detected" }),
      ` names ${mark.artifact_id || `an image starting ${mark.artifact_prefix}`} (confidence ${mark.confidence}).`));
  } else {
    section.append(h("p", { "data-watermark": "absent" }, h("span", { class: "badge state-none", text: "Not found" }),
      " No Pictor watermark in the pixels."));
  }
  return section;
}

/** Ancestors left, descendants right, one column per generation; each node links to its page. */
function lineageGraph(lineage) {
  const nodes = new Map([[lineage.id, { id: lineage.id, operation: "this image", depth: 0 }]]);
  for (const item of [...lineage.ancestors, ...lineage.descendants]) nodes.set(item.id, { ...item, depth: null });
  let changed = true;
  for (let pass = 0; changed && pass < 64; pass += 1) {
    changed = false;
    for (const edge of lineage.edges) {
      const parent = nodes.get(edge.parent);
      const child = nodes.get(edge.child);
      if (!parent || !child) continue;
      if (child.depth !== null && parent.depth === null) {
        parent.depth = child.depth - 1;
        changed = true;
      } else if (parent.depth !== null && child.depth === null) {
        child.depth = parent.depth + 1;
        changed = true;
      }
    }
  }
  const columns = new Map();
  for (const node of nodes.values()) {
    node.depth ??= 0;
    if (!columns.has(node.depth)) columns.set(node.depth, []);
    node.row = columns.get(node.depth).push(node) - 1;
  }
  const depths = [...columns.keys()];
  const minDepth = Math.min(...depths);
  const W = 190;
  const H = 64;
  const BOX_W = 150;
  const BOX_H = 44;
  const width = (Math.max(...depths) - minDepth + 1) * W;
  const height = Math.max(...[...columns.values()].map((column) => column.length)) * H;
  const place = (node) => ({ x: (node.depth - minDepth) * W + 10, y: node.row * H + 10 });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 10}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height + 10));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Lineage: ${lineage.ancestors.length} ancestors, ${lineage.descendants.length} ` +
    "descendants");
  const make = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  for (const edge of lineage.edges) {
    const parent = nodes.get(edge.parent);
    const child = nodes.get(edge.child);
    if (!parent || !child) continue;
    const a = place(parent);
    const b = place(child);
    const x1 = a.x + BOX_W;
    const y1 = a.y + BOX_H / 2;
    const x2 = b.x;
    const y2 = b.y + BOX_H / 2;
    svg.append(make("line", { x1, y1, x2, y2, class: "edge" }),
      make("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, class: "edge-label", "text-anchor": "middle" },
        edge.operation));
  }
  for (const node of nodes.values()) {
    const { x, y } = place(node);
    const link = make("a", { href: `#/image/${node.id}`, class: node.id === lineage.id ? "node root" : "node" });
    link.append(make("rect", { x, y, width: BOX_W, height: BOX_H, rx: 6 }),
      make("text", { x: x + 8, y: y + 18 }, node.id.length > 20 ? `${node.id.slice(0, 19)}…` : node.id),
      make("text", { x: x + 8, y: y + 35, class: "sub" }, node.operation || ""));
    svg.append(link);
  }
  return svg;
}

function lineageSection(lineage) {
  const section = h("section", { class: "card", "aria-labelledby": "lineage-title" },
    h("h3", { id: "lineage-title", text: "Lineage" }));
  if (!lineage.ancestors.length && !lineage.descendants.length) {
    section.append(h("p", { text: "No ancestors or descendants: made from a prompt alone, and not edited since." }));
  }
  section.append(h("div", { class: "graph", "data-edges": String(lineage.edges.length) }, lineageGraph(lineage)));
  return section;
}

function auditSection(audit, index) {
  const section = h("section", { class: "card", "aria-labelledby": "audit-title" },
    h("h3", { id: "audit-title", text: "Audit entry" }));
  if (index === null || index === undefined) {
    section.append(h("p", { text: "No audit entry (uploads are recorded with the turn that used them)." }));
    return section;
  }
  if (!audit || audit.error) {
    section.append(h("p", { class: "error-text", text: `Audit entry ${index}: ${audit?.error?.message || "unavailable"}` }));
    return section;
  }
  const entry = audit.entry ? JSON.parse(audit.entry) : {};
  const policy = entry.policy || {};
  const blocked = (policy.checks || []).flatMap((check) => check.rule_ids || []);
  section.append(
    list([["Index", audit.leaf_index], ["Kind", entry.kind], ["Time", entry.time || entry.created],
      ["Model", entry.model], ["Seed", entry.parameters?.seed], ["Device", entry.device],
      ["Leaf hash", short(audit.leaf_hash, 16)], ["In tree of size", audit.tree_size],
      ["Root", short(audit.root, 16)],
      ["Content policy", policy.decision ? `${policy.decision} (policy ${policy.version}` +
        `${blocked.length ? `; rules noted: ${blocked.join(", ")}` : ""})` : ""]]),
    h("details", {}, h("summary", { text: "The entry as logged (canonical JSON)" }),
      h("pre", { "data-audit-index": String(audit.leaf_index), text: JSON.stringify(entry, null, 2) })),
    h("details", {}, h("summary", { text: "Inclusion proof and signed checkpoint" }),
      h("pre", { text: [`proof: ${audit.proof.join("\n       ")}`, "", audit.checkpoint || ""].join("\n") })),
  );
  return section;
}

export async function renderImagePage(id, container, { showError }) {
  container.replaceChildren(h("p", { class: "status", text: `Loading ${id}…` }));
  try {
    const [provenance, lineage, content] = await Promise.all([
      request(`/v1/images/${encodeURIComponent(id)}/provenance`),
      request(`/v1/images/${encodeURIComponent(id)}/lineage`),
      blob(`/v1/images/${encodeURIComponent(id)}/content`),
    ]);
    const form = new FormData();
    form.append("image", content, id);
    const index = provenance.audit_index;
    const [verified, audit] = await Promise.all([
      request("/v1/provenance/verify", { method: "POST", form }).catch(() => null),
      index === null || index === undefined ? null
        : request(`/v1/audit/entries/${index}/proof`).catch((error) => ({ error })),
    ]);
    const objectUrl = URL.createObjectURL(content);
    const extension = (content.type.split("/")[1] || "png").replace("jpeg", "jpg");
    const me = [...lineage.ancestors, ...lineage.descendants];
    const prompt = verified?.image?.prompt ?? me.find((item) => item.id === id)?.prompt;
    container.replaceChildren(
      h("div", { class: "image-head" },
        h("h2", { text: `Image ${id}` }),
        h("a", { class: "button primary", href: objectUrl, download: `${id}.${extension}`, id: "download",
          text: "Download" })),
      h("div", { class: "image-body" },
        h("figure", { class: "card" }, h("img", { src: objectUrl, alt: prompt || `Image ${id}` }),
          h("figcaption", { text: prompt ? `"${prompt}"` : "" })),
        h("div", { class: "image-facts" }, c2paSection(provenance.c2pa), watermarkSection(verified?.watermark),
          lineageSection(lineage), auditSection(audit, index))),
    );
  } catch (error) {
    container.replaceChildren(h("p", { class: "error-text", text: `Could not open ${id}.` }));
    showError(error);
  }
}

// ---- verify --------------------------------------------------------------------------------------------------

const MATCH_TEXT = {
  exact: "Unchanged since: the file is byte for byte the one Pictor produced.",
  manifest: "Re-saved since, with its signed manifest intact: the signed content still matches.",
  watermark: "Its metadata was stripped or it was re-encoded since: it was recognised by its invisible watermark.",
};

export class Verify {
  constructor({ showError, clearError }) {
    this.showError = showError;
    this.clearError = clearError;
    this.zone = document.getElementById("verify-drop");
    this.input = document.getElementById("verify-file");
    this.result = document.getElementById("verify-result");
    this.zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      this.zone.classList.add("over");
    });
    this.zone.addEventListener("dragleave", () => this.zone.classList.remove("over"));
    this.zone.addEventListener("drop", (event) => {
      event.preventDefault();
      this.zone.classList.remove("over");
      const file = event.dataTransfer?.files?.[0];
      if (file) this.check(file);
    });
    this.zone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.input.click();
      }
    });
    this.input.addEventListener("change", () => {
      if (this.input.files[0]) this.check(this.input.files[0]);
      this.input.value = "";
    });
    document.addEventListener("paste", (event) => {
      if (document.getElementById("view-verify").hidden) return;
      const file = [...(event.clipboardData?.files || [])][0];
      if (file) {
        event.preventDefault();
        this.check(file);
      }
    });
  }

  enter() {
    this.zone.focus();
  }

  async check(file) {
    this.clearError();
    this.result.replaceChildren(h("p", { class: "status", text: `Checking ${file.name || "the image"}…` }));
    const form = new FormData();
    form.append("image", file, file.name || "image");
    try {
      this.render(file, await request("/v1/provenance/verify", { method: "POST", form }));
    } catch (error) {
      this.result.replaceChildren(h("p", { class: "verdict", "data-verdict": "error",
        text: `Could not check ${file.name || "the image"}.` }));
      this.showError(error);
    }
  }

  render(file, report) {
    const c2pa = report.c2pa || {};
    const mark = report.watermark || {};
    const image = report.image;
    const signedByPictor = Boolean(c2pa.pictor) || /pictor/i.test(c2pa.claim_generator || "");
    let verdict;
    let headline;
    let detail;
    if (image) {
      verdict = "pictor";
      headline = "Made by Pictor";
      detail = h("p", {}, "This is ", h("a", { href: `#/image/${image.id}`, text: image.id }),
        `, one of your images (${image.operation}, ${image.model || "model unknown"}, seed ${image.seed}, ` +
        `made ${when(image.created)}). ${MATCH_TEXT[image.match] || ""}`);
    } else if (signedByPictor && c2pa.validation_state) {
      verdict = "pictor-elsewhere";
      headline = "Signed by Pictor, but not one of your images here";
      detail = h("p", { text: "It carries a Pictor manifest, made by another installation or tenant." });
    } else if (mark.detected) {
      verdict = "pictor-elsewhere";
      headline = "A Pictor watermark, but not one of your images here";
      detail = h("p", { text: "The pixels carry a Pictor watermark that names no image of yours." });
    } else {
      verdict = "foreign";
      headline = "Not made by Pictor";
      detail = h("p", { text: "No Pictor manifest, no Pictor watermark, and no image of yours with these bytes." });
    }
    const sections = [h("p", { class: `verdict verdict-${verdict}`, "data-verdict": verdict, text: headline }),
      detail];
    if (c2pa.validation_state === "Invalid") {
      sections.push(h("p", { class: "error-text", text: `${STATE_TEXT.Invalid} ${(c2pa.errors || []).join("; ")}` }));
    }
    const lineage = report.lineage;
    if (lineage) {
      const edits = lineage.descendants.length;
      sections.push(h("p", { text: edits ? `Since then, ${edits} image(s) were made from it in Pictor: ` +
        lineage.descendants.map((d) => `${d.id} (${d.operation})`).join(", ") + "."
        : "No image has been made from it in Pictor since." }));
      sections.push(lineageSection(lineage));
    }
    sections.push(c2paSection(c2pa), watermarkSection(mark));
    this.result.replaceChildren(h("h3", { text: file.name || "Pasted image" }), ...sections);
  }
}
