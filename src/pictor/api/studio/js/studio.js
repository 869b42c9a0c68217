// The conversation view: prompt, streamed previews, turns (strip, branch, undo), live mode, mask, references,
// parameters and the A/B grid. Every turn is a session turn: text-only turns go through the Responses API
// (which streams partial previews), turns with a mask or reference images through /v1/sessions/{id}/turns
// (which names references for instructions such as "put the logo in the top left").

import { MaskPainter } from "./mask.js";
import { ApiError, dataUrl, readAsDataUrl, request, stream, urlAsDataUrl } from "./api.js";

// Live mode: a request goes out LIVE_DEBOUNCE_MS after the last keystroke, and a newer one supersedes (cancels) the
// request still running, unless the image on screen is older than LIVE_MAX_STALE_MS: then the running request is
// let finish and shown, and the newest words go next, so that continuous typing still shows images as it goes.
const LIVE_DEBOUNCE_MS = 120;
const LIVE_MAX_STALE_MS = 1000;
const PARTIAL_IMAGES = 2;
const MAX_SEED = 2 ** 31;

const $ = (id) => document.getElementById(id);

export class Studio {
  constructor({ showError, clearError }) {
    this.showError = showError;
    this.clearError = clearError;
    this.session = null; // GET /v1/sessions/{id}
    this.base = null; // the turn the next instruction builds on (null: a new image)
    this.baseSrc = null; // that turn's image (a data URL or a signed link)
    this.refs = []; // {name, dataUrl}
    this.busy = false;
    this.modelsLoaded = false;
    this.live = { controller: null, timer: null, pending: null, text: null, arrived: false, lastShownAt: 0,
      typedAt: new Map(), requests: 0, aborted: 0, shown: 0, samples: [] };
    this.partialsShown = 0;
    window.pictorLive = this.live; // read by the end-to-end tests and bench/studio_latency.py
    window.pictorStudio = this;

    this.el = {
      prompt: $("prompt"), form: $("prompt-form"), send: $("send"), undo: $("undo"), fresh: $("new-session"),
      image: $("current-image"), wrap: $("canvas-wrap"), grid: $("grid"), status: $("status"),
      liveStatus: $("live-status"), strip: $("strip"), branchNote: $("branch-note"), refs: $("refs"),
      refList: $("ref-list"), refFile: $("ref-file"), model: $("p-model"), size: $("p-size"),
      quality: $("p-quality"), n: $("p-n"), seed: $("p-seed"), seedLock: $("p-seed-lock"), reroll: $("p-reroll"),
      format: $("p-format"), background: $("p-background"), liveMode: $("p-live"), maskToggle: $("mask-toggle"),
      maskClear: $("mask-clear"), brushSize: $("brush-size"), promptLabel: $("prompt-label"),
    };
    this.mask = new MaskPainter($("mask-canvas"), { onChange: () => this._labels() });
    this._wire();
    this._labels();
  }

  async enter() {
    if (!this.modelsLoaded) {
      try {
        const models = await request("/v1/models");
        this.el.model.replaceChildren(...models.data.map((model) => new Option(model.id, model.id)));
        this.modelsLoaded = true;
      } catch (error) {
        this.showError(error);
      }
    }
    this.el.prompt.focus();
  }

  // ---- wiring ----------------------------------------------------------------------------------------------

  _wire() {
    const el = this.el;
    el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    el.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    el.prompt.addEventListener("input", () => this._typed());
    el.undo.addEventListener("click", () => this.undo());
    el.fresh.addEventListener("click", () => this.reset());
    el.reroll.addEventListener("click", () => this.reroll());
    el.liveMode.addEventListener("change", () => {
      if (el.liveMode.checked && !el.seedLock.checked) this.reroll(); // a fixed seed: only the words change the image
      if (!el.liveMode.checked) this.cancelLive();
      this._labels();
      this._typed();
    });
    el.n.addEventListener("change", () => this._labels());
    el.maskToggle.addEventListener("click", () => this.toggleMask());
    el.maskClear.addEventListener("click", () => this.mask.clear());
    el.brushSize.addEventListener("input", () => { this.mask.size = Number(el.brushSize.value); });
    for (const button of document.querySelectorAll(".toolbar .tool")) {
      button.addEventListener("click", () => this.setTool(button.dataset.tool));
    }
    el.image.addEventListener("load", () => {
      this.mask.fit(el.image.naturalWidth, el.image.naturalHeight);
    });
    // Reference images: drop, paste or pick.
    el.refs.addEventListener("dragover", (event) => {
      event.preventDefault();
      el.refs.classList.add("over");
    });
    el.refs.addEventListener("dragleave", () => el.refs.classList.remove("over"));
    el.refs.addEventListener("drop", (event) => {
      event.preventDefault();
      el.refs.classList.remove("over");
      this.addRefs(event.dataTransfer?.files);
    });
    el.refFile.addEventListener("change", () => {
      this.addRefs(el.refFile.files);
      el.refFile.value = "";
    });
    document.addEventListener("paste", (event) => {
      if (document.getElementById("view-studio").hidden) return;
      const files = [...(event.clipboardData?.files || [])].filter((file) => file.type.startsWith("image/"));
      if (files.length) {
        event.preventDefault();
        this.addRefs(files);
      }
    });
  }

  /** Keyboard shortcuts while the studio is shown (the main module routes keydown here). */
  onKey(event) {
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
      target instanceof HTMLSelectElement;
    const mod = event.ctrlKey || event.metaKey;
    if (mod && !event.shiftKey && event.key.toLowerCase() === "z") {
      // In a text field with text, Ctrl+Z stays the field's own undo.
      if (typing && target.value) return;
      event.preventDefault();
      this.undo();
      return;
    }
    if (event.key === "Escape") {
      this.cancelLive();
      if (typing) target.blur(); // out of the field: single-key shortcuts work again
      else if (this.mask.enabled) this.toggleMask(false);
      return;
    }
    if (typing || mod || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "/") {
      event.preventDefault();
      this.el.prompt.focus();
    } else if (key === "m") {
      this.toggleMask();
    } else if (key === "b") {
      this.setTool("brush");
    } else if (key === "e") {
      this.setTool("eraser");
    } else if (key === "r") {
      this.setTool("rect");
    }
  }

  // ---- parameters ------------------------------------------------------------------------------------------

  params() {
    const el = this.el;
    const seedText = el.seed.value.trim();
    const seed = el.seedLock.checked && /^\d+$/.test(seedText) ? Number(seedText) : null;
    return {
      model: el.model.value || null, size: el.size.value, quality: el.quality.value, n: Number(el.n.value),
      seed, format: el.format.value, background: el.background.value,
    };
  }

  reroll() {
    this.el.seed.value = String(Math.floor(Math.random() * MAX_SEED));
    this.el.seedLock.checked = true;
  }

  _labels() {
    const el = this.el;
    const editing = Boolean(this.base);
    const masked = this.mask.painted;
    el.promptLabel.textContent = editing
      ? masked ? "What to put in the painted area" : "What to change (a follow-up instruction)"
      : "Describe an image";
    el.prompt.placeholder = editing ? (masked ? "a yellow star" : "make the circle green, or: place the logo in the top left")
      : "a red star in the top left and a blue circle on a white background";
    el.send.textContent = editing ? "Refine" : Number(el.n.value) > 1 ? "Generate variations" : "Generate";
    el.undo.disabled = !this.session?.current_turn;
    el.maskToggle.disabled = !this.baseSrc;
    el.maskClear.disabled = !masked;
    const tip = this.session?.current_turn;
    if (this.base && tip && this.base !== tip) {
      const turn = this.session.turns.find((t) => t.id === this.base);
      el.branchNote.textContent = `Branching from turn ${turn ? turn.index : "?"}`;
    } else {
      el.branchNote.textContent = "";
    }
  }

  _status(text) {
    this.el.status.textContent = text;
  }

  _setBusy(busy) {
    this.busy = busy;
    this.el.send.disabled = busy;
    this.el.wrap.classList.toggle("busy", busy);
  }

  // ---- what is shown ---------------------------------------------------------------------------------------

  async _show(src, { partial = false } = {}) {
    const image = this.el.image;
    image.hidden = false;
    this.el.grid.hidden = true;
    this.el.wrap.hidden = false;
    this.el.wrap.dataset.empty = "false";
    image.classList.toggle("partial", partial);
    image.src = src;
    $("mask-canvas").hidden = false;
    try {
      await image.decode();
    } catch {
      // a superseded source, or a broken one: the next _show replaces it
    }
  }

  _showNothing() {
    this.el.image.hidden = true;
    this.el.image.removeAttribute("src");
    $("mask-canvas").hidden = true;
    this.el.wrap.dataset.empty = "true";
    this.el.wrap.hidden = false;
    this.el.grid.hidden = true;
  }

  reset() {
    this.cancelLive();
    this.session = null;
    this.base = null;
    this.baseSrc = null;
    this.refs = [];
    this._renderRefs();
    this.mask.clear();
    this.toggleMask(false);
    this._showNothing();
    this._renderStrip();
    this._status("A new conversation.");
    this._labels();
    this.el.prompt.focus();
  }

  // ---- turns -----------------------------------------------------------------------------------------------

  async submit() {
    const text = this.el.prompt.value.trim();
    if (!text) {
      this.el.prompt.focus();
      return;
    }
    if (this.busy) return;
    this.cancelLive();
    this.clearError();
    const params = this.params();
    this._setBusy(true);
    try {
      if (params.n > 1 && !this.base) {
        await this._variations(text, params);
      } else if (this.refs.length || this.mask.hasPaint()) {
        await this._sessionTurn(text, params);
      } else {
        await this._responseTurn(text, params);
      }
      this.el.prompt.value = "";
    } catch (error) {
      this._status("");
      if (this.baseSrc) await this._show(this.baseSrc);
      else if (!this.el.grid.childElementCount) this._showNothing();
      this.showError(error);
    } finally {
      this._setBusy(false);
      this._labels();
      this.el.prompt.focus();
    }
  }

  /** A text-only turn, streamed through the Responses API: partial previews, then the image. */
  async _responseTurn(text, params) {
    const tool = { type: "image_generation", partial_images: PARTIAL_IMAGES, quality: params.quality,
      output_format: params.format, background: params.background, size: this.base ? "auto" : params.size };
    if (params.model) tool.model = params.model;
    const body = { input: text, tools: [tool] };
    if (this.base) body.previous_response_id = `resp_${this.base.replace(/^turn_/, "")}`;
    if (params.seed !== null) body.seed = params.seed;
    this._status(this.base ? "Refining…" : "Generating…");
    let done = null;
    for await (const event of stream("/v1/responses", body)) {
      if (event.type === "response.image_generation_call.partial_image") {
        this._status(`Preview ${event.partial_image_index + 1} of ${PARTIAL_IMAGES}…`);
        this.partialsShown += 1;
        await this._show(dataUrl(event.partial_image_b64, event.output_format || params.format), { partial: true });
      } else if (event.type === "response.completed") {
        done = event.response;
      } else if (event.type === "response.failed") {
        throw new ApiError(400, event.response?.error);
      }
    }
    if (!done) throw new Error("The stream ended before the image was finished.");
    const call = done.output.find((item) => item.type === "image_generation_call");
    await this._load(done.session_id, dataUrl(call.result, call.output_format || params.format));
    this._status(this._describeTurn(call));
  }

  /** A turn with a painted mask and/or reference images, through the sessions API. */
  async _sessionTurn(text, params) {
    if (!this.session) {
      const create = { title: text.slice(0, 200), size: params.size, quality: params.quality };
      if (params.model) create.model = params.model;
      this.session = await request("/v1/sessions", { method: "POST", json: create });
    }
    const body = { text, quality: params.quality, output_format: params.format, background: params.background };
    if (this.base) body.parent_turn = this.base;
    if (params.seed !== null) body.seed = params.seed;
    if (this.refs.length) {
      body.images = this.refs.map((ref) => ref.dataUrl);
      body.image_names = this.refs.map((ref) => ref.name.trim() || null);
    }
    if (this.mask.hasPaint()) {
      if (!this.base) throw new Error("Paint the mask on an image first: there is no image to edit yet.");
      body.mask = this.mask.toDataUrl();
      body.action = "edit";
    }
    this._status(body.mask ? "Editing the painted area…" : "Composing…");
    const turn = await request(`/v1/sessions/${this.session.id}/turns`, { method: "POST", json: body });
    this.refs = [];
    this._renderRefs();
    this.mask.clear();
    this.toggleMask(false);
    await this._load(this.session.id, dataUrl(turn.image.b64_json, turn.output_format || params.format));
    this._status(this._describeTurn({ action: turn.action, image_id: turn.image.id, seed: turn.image.seed,
      unknown_words: turn.image.unknown_words, references: turn.references }));
  }

  _describeTurn(call) {
    const verb = call.action === "edit" ? "Edited" : "Generated";
    let text = `${verb} ${call.image_id} (seed ${call.seed}).`;
    if (call.unknown_words?.length) text += ` Words the model does not know: ${call.unknown_words.join(", ")}.`;
    return text;
  }

  /** Read the session back after a turn or an undo: the strip, the tip, and the tip's image. */
  async _load(sessionId, tipSrc = null) {
    this._apply(await request(`/v1/sessions/${sessionId}`), tipSrc);
    if (!this.el.seedLock.checked) {
      const tip = this.session.turns.find((turn) => turn.id === this.session.current_turn);
      if (tip?.image?.seed != null) this.el.seed.value = String(tip.image.seed); // shown, so it can be locked
    }
  }

  _apply(session, tipSrc = null) {
    this.session = session;
    this.base = session.current_turn;
    const tip = session.turns.find((turn) => turn.id === this.base);
    this.baseSrc = tip ? tipSrc || tip.image.url : null;
    if (this.baseSrc) this._show(this.baseSrc);
    else this._showNothing();
    this._renderStrip();
    this._labels();
  }

  async undo() {
    if (!this.session?.current_turn || this.busy) return;
    this.cancelLive();
    this.clearError();
    try {
      this._apply(await request(`/v1/sessions/${this.session.id}/undo`, { method: "POST" }));
      this._status(this.base ? "Undone: back to the previous turn." : "Undone: no image yet.");
    } catch (error) {
      this.showError(error);
    }
  }

  /** Make an earlier turn the base: the next instruction branches from it. */
  selectTurn(turnId) {
    const turn = this.session?.turns.find((t) => t.id === turnId);
    if (!turn) return;
    this.cancelLive();
    this.base = turn.id;
    this.baseSrc = turn.image.url;
    this.mask.clear();
    this._show(this.baseSrc);
    this._renderStrip();
    this._labels();
    this._status(turn.id === this.session.current_turn ? `Turn ${turn.index} (the latest).`
      : `Turn ${turn.index}: the next instruction makes a new branch from here.`);
    this.el.prompt.focus();
  }

  _renderStrip() {
    const strip = this.el.strip;
    const session = this.session;
    if (!session) {
      strip.replaceChildren();
      return;
    }
    const onBranch = new Set(session.branch);
    strip.replaceChildren(...session.turns.map((turn) => {
      const item = document.createElement("li");
      item.className = "turn";
      item.classList.toggle("on-branch", onBranch.has(turn.id));
      const button = document.createElement("button");
      button.type = "button";
      button.className = "thumb";
      button.dataset.turn = turn.id;
      button.setAttribute("aria-pressed", String(turn.id === this.base));
      button.title = `Turn ${turn.index}: ${turn.text}`;
      const image = document.createElement("img");
      image.src = turn.image.url;
      image.alt = `Turn ${turn.index}: ${turn.text}`;
      const caption = document.createElement("span");
      caption.textContent = `${turn.index}. ${turn.text}`;
      button.append(image, caption);
      button.addEventListener("click", () => this.selectTurn(turn.id));
      const details = document.createElement("a");
      details.href = `#/image/${turn.image.id}`;
      details.className = "details";
      details.textContent = "Provenance";
      details.setAttribute("aria-label", `Provenance of turn ${turn.index}`);
      item.append(button, details);
      return item;
    }));
  }

  // ---- the A/B grid ----------------------------------------------------------------------------------------

  async _variations(text, params) {
    const body = { prompt: text, n: params.n, size: params.size, quality: params.quality,
      output_format: params.format, background: params.background, partial_images: 0 };
    if (params.model) body.model = params.model;
    if (params.seed !== null) body.seed = params.seed;
    const grid = this.el.grid;
    grid.replaceChildren();
    grid.hidden = false;
    this.el.wrap.hidden = true;
    this._status(`Generating ${params.n} variations…`);
    let count = 0;
    for await (const event of stream("/v1/images/generations", body)) {
      if (event.type !== "image_generation.completed") continue;
      count += 1;
      const cell = document.createElement("figure");
      cell.className = "cell";
      const image = document.createElement("img");
      image.src = dataUrl(event.b64_json, event.output_format);
      image.alt = `Variation ${count} of "${text}" (seed ${event.seed})`;
      const caption = document.createElement("figcaption");
      const link = document.createElement("a");
      link.href = `#/image/${event.id}`;
      link.textContent = `${String.fromCharCode(64 + count)} · seed ${event.seed}`;
      caption.append(link);
      cell.append(image, caption);
      grid.append(cell);
      this._status(`${count} of ${params.n} variations.`);
    }
  }

  // ---- live mode -------------------------------------------------------------------------------------------

  _typed() {
    if (!this.el.liveMode.checked) return;
    const text = this.el.prompt.value.trim();
    const live = this.live;
    clearTimeout(live.timer);
    live.timer = null;
    if (!text) return;
    live.typedAt.set(text, performance.now());
    live.timer = setTimeout(() => {
      live.timer = null;
      this._liveRun(text);
    }, LIVE_DEBOUNCE_MS);
  }

  cancelLive() {
    const live = this.live;
    clearTimeout(live.timer);
    live.timer = null;
    live.pending = null;
    this._abortLive();
  }

  /** Abort the live request in flight (its words are superseded), leaving a debounced keystroke to run. */
  _abortLive() {
    const live = this.live;
    if (live.controller) {
      live.controller.abort();
      live.controller = null;
      live.aborted += 1;
      this._liveStatus();
    }
  }

  async _liveRun(text) {
    if (this.busy) return;
    const live = this.live;
    if (live.controller && text === live.text) {
      live.pending = null; // these very words are on their way (a space typed and deleted, say)
      return;
    }
    if (live.controller && (live.arrived || performance.now() - live.lastShownAt > LIVE_MAX_STALE_MS)) {
      live.pending = text; // its image is here, or the screen is stale: let it finish, then these words
      return;
    }
    // A request for older words is superseded: closing it cancels it on the server. Not cancelLive(): a keystroke
    // typed since may still be waiting out its debounce, and clearing its timer would lose the newest words.
    live.pending = null;
    this._abortLive();
    const controller = new AbortController();
    live.controller = controller;
    live.text = text;
    live.arrived = false;
    live.requests += 1;
    this._liveStatus();
    const params = this.params();
    const common = { quality: params.quality, output_format: params.format, background: params.background,
      partial_images: 0, seed: params.seed ?? 0 };
    if (params.model) common.model = params.model;
    try {
      let path;
      let body;
      if (this.base && this.baseSrc) {
        path = "/v1/images/edits";
        if (this._baseData?.src !== this.baseSrc) {
          this._baseData = { src: this.baseSrc, data: await urlAsDataUrl(this.baseSrc) };
        }
        body = { ...common, prompt: text, size: "auto", images: [{ image_url: this._baseData.data }] };
      } else {
        path = "/v1/images/generations";
        body = { ...common, prompt: text, size: params.size };
      }
      let completed = null;
      for await (const event of stream(path, body, controller.signal)) {
        if (event.type.endsWith(".completed")) completed = event;
      }
      if (controller.signal.aborted || !completed) return;
      live.arrived = true; // stored on the server already: show it; newer words go next instead of aborting it
      await this._show(dataUrl(completed.b64_json, completed.output_format || params.format));
      if (controller.signal.aborted) return;
      const typed = live.typedAt.get(text);
      live.shown += 1;
      live.lastShownAt = performance.now();
      if (typed !== undefined) live.samples.push({ text, ms: performance.now() - typed, id: completed.id });
      this.el.image.dataset.liveText = text;
      this._status(`Live: "${text}" (seed ${completed.seed}). Press Enter to keep it as a turn.`);
      this.clearError();
    } catch (error) {
      if (error.name === "AbortError" || controller.signal.aborted) return;
      this.showError(error);
    } finally {
      if (live.controller === controller) {
        live.controller = null;
        const next = live.pending;
        live.pending = null;
        // A keystroke still waiting out its debounce brings newer words: do not start a request it would cancel.
        if (next !== null && live.timer === null) this._liveRun(next);
      }
      this._liveStatus();
    }
  }

  _liveStatus() {
    const live = this.live;
    const status = this.el.liveStatus;
    status.dataset.requests = String(live.requests);
    status.dataset.aborted = String(live.aborted);
    status.dataset.shown = String(live.shown);
    if (!this.el.liveMode.checked && !live.requests) {
      status.textContent = "";
      return;
    }
    const last = live.samples.at(-1);
    status.textContent = `Live: ${live.requests} requests, ${live.aborted} superseded and cancelled, ` +
      `${live.shown} shown${last ? `; last keystroke to image ${Math.round(last.ms)} ms` : ""}.`;
  }

  // ---- mask ------------------------------------------------------------------------------------------------

  toggleMask(force) {
    const enabled = force === undefined ? !this.mask.enabled : force;
    if (enabled && !this.baseSrc) return;
    this.mask.setEnabled(enabled);
    this.el.maskToggle.setAttribute("aria-pressed", String(enabled));
    this.el.wrap.classList.toggle("masking", enabled);
    if (enabled) this._status("Paint where the image may change, then describe what goes there and press Enter.");
  }

  setTool(tool) {
    this.mask.tool = tool;
    for (const button of document.querySelectorAll(".toolbar .tool")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    }
    if (this.baseSrc && !this.mask.enabled) this.toggleMask(true);
  }

  // ---- reference images ------------------------------------------------------------------------------------

  async addRefs(files) {
    const images = [...(files || [])].filter((file) => file.type.startsWith("image/"));
    if (!images.length) {
      if (files?.length) this.showError(new Error("Only image files can be references."));
      return;
    }
    for (const file of images) {
      const stem = (file.name || "").replace(/\.[^.]+$/, "").replace(/[_-]+/g, " ").trim();
      const name = stem && stem !== "image" ? `the ${stem}` : `image ${this.refs.length + 1}`;
      this.refs.push({ name, dataUrl: await readAsDataUrl(file) });
    }
    this._renderRefs();
    this._status(`${this.refs.length} reference image(s): name them, then use the names in your instruction.`);
  }

  _renderRefs() {
    this.el.refs.classList.toggle("has-refs", this.refs.length > 0);
    this.el.refList.replaceChildren(...this.refs.map((ref, index) => {
      const item = document.createElement("li");
      const image = document.createElement("img");
      image.src = ref.dataUrl;
      image.alt = `Reference ${index + 1}`;
      const id = `ref-name-${index}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = "Name";
      const input = document.createElement("input");
      input.id = id;
      input.className = "ref-name";
      input.value = ref.name;
      input.addEventListener("input", () => { ref.name = input.value; });
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove reference ${index + 1}`);
      remove.addEventListener("click", () => {
        this.refs.splice(index, 1);
        this._renderRefs();
      });
      item.append(image, label, input, remove);
      return item;
    }));
  }
}
