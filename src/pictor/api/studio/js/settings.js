// The tenant's settings page: today's usage beside the quotas (any key), and for an admin key the tenant's keys
// (make, revoke) and its policy level, badge and retention. Everything through the public admin API.

import { request } from "./api.js";
import { h } from "./pages.js";

const QUOTA_LABELS = {
  images_per_day: "Images today", steps_per_day: "Denoising steps today", running_jobs: "Running jobs",
  queued_jobs: "Queued jobs", sessions: "Sessions", files: "Files", stored_bytes: "Stored bytes",
  work_per_minute: "Work per minute",
};

export class Settings {
  constructor({ showError, clearError }) {
    this.showError = showError;
    this.clearError = clearError;
    this.root = document.getElementById("settings-page");
  }

  async enter() {
    this.root.replaceChildren(h("p", { class: "status", role: "status", text: "Loading…" }));
    try {
      const usage = await request("/v1/usage");
      const parts = [this.usageTable(usage)];
      try {
        const [keys, settings] = await Promise.all([request("/v1/admin/keys"), request("/v1/admin/settings")]);
        parts.push(this.keysSection(keys), this.settingsForm(settings));
      } catch (error) {
        if (error.status !== 403) throw error;
        parts.push(h("p", { class: "note", id: "settings-not-admin",
                            text: "Keys and settings are for the tenant's admin keys; this key can see its usage." }));
      }
      this.root.replaceChildren(...parts);
    } catch (error) {
      this.root.replaceChildren();
      this.showError(error);
    }
  }

  usageTable(usage) {
    const rows = Object.keys(QUOTA_LABELS).map((name) => h("tr", {},
      h("th", { scope: "row", text: QUOTA_LABELS[name] }),
      h("td", { text: name in usage.used ? String(usage.used[name]) : "–" }),
      h("td", { text: usage.quotas[name] === null || usage.quotas[name] === undefined ? "no limit"
                                                                                  : String(usage.quotas[name]) })));
    return h("section", { "aria-labelledby": "usage-title" },
      h("h3", { id: "usage-title", text: `Usage on ${usage.day} (UTC)` }),
      h("table", { id: "usage-table", class: "facts-table" },
        h("thead", {}, h("tr", {}, h("th", { text: "" }), h("th", { text: "Used" }), h("th", { text: "Quota" }))),
        h("tbody", {}, rows)));
  }

  keysSection(keys) {
    const made = h("p", { id: "new-key", class: "new-key", role: "status", "aria-live": "polite" });
    const rows = keys.data.map((key) => h("tr", { "data-key": key.id },
      h("td", { text: key.hint }), h("td", { text: key.role }), h("td", { text: key.label || "" }),
      h("td", { text: key.revoked_at ? "revoked" : key.expires_at ? `until ${new Date(key.expires_at * 1000)
        .toLocaleString()}` : "active" }),
      h("td", {}, key.revoked_at ? null : h("button", { type: "button", class: "revoke", text: "Revoke",
        onclick: () => this.act(`/v1/admin/keys/${key.id}/revoke`, {}) }))));
    const role = h("select", { id: "new-key-role", "aria-label": "Role" },
      keys.roles.map((name) => h("option", { value: name, text: name })));
    role.value = "member";
    const label = h("input", { id: "new-key-label", "aria-label": "Label", placeholder: "label" });
    const days = h("input", { id: "new-key-days", type: "number", min: "1", "aria-label": "Expires in days",
                              placeholder: "expires in days" });
    const form = h("form", { class: "inline-form", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const key = await request("/v1/admin/keys", { method: "POST", json: {
          role: role.value, label: label.value || null, expires_in_days: days.value ? Number(days.value) : null } });
        await this.enter();
        document.getElementById("new-key").textContent = `New ${key.role} key (shown once): ${key.key}`;
      } catch (error) {
        this.showError(error);
      }
    } }, role, label, days, h("button", { type: "submit", text: "Make a key" }));
    return h("section", { "aria-labelledby": "keys-title" },
      h("h3", { id: "keys-title", text: "Keys" }),
      h("table", { id: "keys-table", class: "facts-table" },
        h("thead", {}, h("tr", {}, ["Key", "Role", "Label", "State", ""].map((text) => h("th", { text })))),
        h("tbody", {}, rows)),
      form, made);
  }

  settingsForm(settings) {
    const level = h("select", { id: "setting-level", "aria-label": "Content policy level" },
      [["", "server default"], ["strict", "strict"], ["standard", "standard"], ["low", "low"]]
        .map(([value, text]) => h("option", { value, text })));
    level.value = settings.moderation_level || "";
    const badge = h("input", { id: "setting-badge", "aria-label": "Badge text (empty: no badge)",
                               value: settings.badge ? settings.badge.text : "", placeholder: "no badge" });
    const retention = h("input", { id: "setting-retention", type: "number", min: "0",
                                   "aria-label": "Delete images after days (empty: keep)",
                                   value: settings.retention_days ?? "", placeholder: "keep" });
    const saved = h("p", { id: "settings-saved", class: "status", role: "status", "aria-live": "polite" });
    const form = h("form", { id: "settings-form", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const body = {
          moderation_level: level.value || null,
          badge: badge.value ? { ...(settings.badge || {}), text: badge.value } : null,
          retention_days: retention.value === "" ? null : Number(retention.value),
        };
        await request("/v1/admin/settings", { method: "PATCH", json: body });
        await this.enter();
        document.getElementById("settings-saved").textContent = "Saved.";
      } catch (error) {
        this.showError(error);
      }
    } },
    h("label", { for: "setting-level", text: "Content policy level" }), level,
    h("label", { for: "setting-badge", text: "Visible badge" }), badge,
    h("label", { for: "setting-retention", text: "Delete images after (days)" }), retention,
    h("button", { type: "submit", text: "Save" }));
    return h("section", { "aria-labelledby": "tenant-settings-title" },
      h("h3", { id: "tenant-settings-title", text: "Tenant settings" }), form, saved);
  }

  async act(path, json) {
    try {
      await request(path, { method: "POST", json });
      await this.enter();
    } catch (error) {
      this.showError(error);
    }
  }
}


