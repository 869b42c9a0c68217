// The studio's entry point: sign-in, the views behind #/ routes, errors and keyboard shortcuts.

import { clearApiKey, describeError, request, setApiKey, signedIn } from "./api.js";
import { Gallery, renderImagePage, Verify } from "./pages.js";
import { Settings } from "./settings.js";
import { Studio } from "./studio.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["signin", "studio", "gallery", "image", "verify", "settings"];

function showError(error) {
  console.warn(error);
  $("error-text").textContent = describeError(error);
  $("error").hidden = false;
  $("error").dataset.code = error?.code || "";
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

const studio = new Studio({ showError, clearError });
const gallery = new Gallery({ showError });
const verify = new Verify({ showError, clearError });
const settings = new Settings({ showError, clearError });

function show(view) {
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.body.dataset.view = view;
}

async function route() {
  const inside = signedIn();
  $("nav").hidden = !inside;
  $("sign-out").hidden = !inside;
  if (!inside) {
    show("signin");
    $("api-key").focus();
    return;
  }
  const [, view = "studio", arg] = location.hash.split("/");
  if (view === "gallery") {
    show("gallery");
    await gallery.enter();
  } else if (view === "image" && arg) {
    show("image");
    await renderImagePage(decodeURIComponent(arg), $("image-page"), { showError });
    $("main").focus();
  } else if (view === "verify") {
    show("verify");
    verify.enter();
  } else if (view === "settings") {
    show("settings");
    await settings.enter();
  } else {
    show("studio");
    await studio.enter();
  }
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("signin-error").textContent = "";
  setApiKey(key);
  try {
    await request("/v1/models"); // any authenticated read tells whether the key is good
  } catch (error) {
    clearApiKey();
    $("signin-error").textContent = error.status === 401 ? "That key was not accepted: check it and try again."
      : describeError(error);
    return;
  }
  $("api-key").value = "";
  clearError();
  if (!location.hash || location.hash === "#/") location.hash = "#/studio";
  else route();
});

$("sign-out").addEventListener("click", () => {
  clearApiKey();
  studio.reset();
  clearError();
  location.hash = "#/";
  route();
});

$("error-close").addEventListener("click", clearError);

window.addEventListener("pictor:unauthorized", () => {
  clearApiKey();
  route();
  $("signin-error").textContent = "The server did not accept the key (revoked?): sign in again.";
});

window.addEventListener("hashchange", route);

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("error").hidden) clearError();
  if (document.body.dataset.view === "studio") studio.onKey(event);
});

route();
