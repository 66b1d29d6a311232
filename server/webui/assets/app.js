// Sealcache org settings page. Talks to the admin API in its connect JSON
// form: POST /sealcache.admin.v1.<Service>/<Method> with a JSON body.
// The API key lives in sessionStorage only (this tab, until sign-out).
"use strict";

(function () {
  const KEY_STORAGE = "sealcache.apiKey";
  const $ = (id) => document.getElementById(id);

  const state = { org: null, config: null, auditToken: "" };

  // ---- API ---------------------------------------------------------------

  // ApiError carries the connect error code and, when the server's message
  // starts with "field_name: ", the field it concerns.
  class ApiError extends Error {
    constructor(code, message) {
      const m = /^([a-z][a-z0-9_]*): ([\s\S]*)$/.exec(message || "");
      super(m ? m[2] : message || code);
      this.code = code;
      this.field = m ? m[1] : "";
    }
  }

  async function api(service, method, body, apiKey) {
    let resp;
    try {
      resp = await fetch("/sealcache.admin.v1." + service + "/" + method, {
        method: "POST",
        headers: { "Content-Type": "application/json", "x-api-key": apiKey || sessionStorage.getItem(KEY_STORAGE) || "" },
        body: JSON.stringify(body || {}),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError("unavailable", "The server could not be reached. Check your connection and try again.");
    }
    const text = await resp.text();
    let data = {};
    try { data = text ? JSON.parse(text) : {}; } catch (e) { /* not JSON: keep the status */ }
    if (!resp.ok) {
      throw new ApiError(data.code || "unknown", data.message || ("HTTP " + resp.status));
    }
    return data;
  }

  // ---- Formatting --------------------------------------------------------

  function fmtTime(ts, never) {
    if (!ts) return never || "—";
    const d = new Date(ts);
    return isNaN(d) ? ts : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }
  function fmtBytes(v) {
    let n = Number(v || 0);
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
  }
  function fmtCount(v) { return Number(v || 0).toLocaleString(); }
  function fmtDuration(seconds) {
    const s = Number(seconds || 0);
    if (s <= 0) return "the key cache time";
    if (s % 60 === 0) { const m = s / 60; return m + (m === 1 ? " minute" : " minutes"); }
    return s + " seconds";
  }
  function roleName(r) { return (r || "ROLE_UNSPECIFIED").replace(/^ROLE_/, "").toLowerCase(); }
  function setText(id, text) { $(id).textContent = text; }
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function emptyRow(tbody, cols, text) {
    const tr = document.createElement("tr");
    const td = cell(tr, text, "empty");
    td.colSpan = cols;
    tbody.appendChild(tr);
  }

  // ---- Errors next to fields ---------------------------------------------

  function clearErrors(form) {
    form.querySelectorAll(".field").forEach((f) => {
      f.classList.remove("invalid");
      const e = f.querySelector(".field-error");
      if (e) e.textContent = "";
      const c = f.querySelector("input, select, textarea");
      if (c) c.removeAttribute("aria-invalid");
    });
    $("global-error").hidden = true;
  }

  // showError puts err next to its field in form (the field the server named,
  // else fallbackField), or in the banner at the top when there is none.
  function showError(form, err, fallbackField) {
    const name = (err && err.field) || fallbackField;
    const field = name && form && form.querySelector('[data-field="' + name + '"]');
    if (field) {
      field.classList.add("invalid");
      field.querySelector(".field-error").textContent = err.message;
      const control = field.querySelector("input:not([type=radio]), select, textarea, input");
      if (control) { control.setAttribute("aria-invalid", "true"); control.focus(); }
      return;
    }
    const banner = $("global-error");
    banner.textContent = (err.field ? err.field + ": " : "") + err.message;
    banner.hidden = false;
  }

  function busy(button, on) { if (button) button.disabled = on; }

  // ---- Copy buttons ------------------------------------------------------

  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("[data-copy]");
    if (!b) return;
    const src = $(b.dataset.copy);
    src.select();
    try { await navigator.clipboard.writeText(src.value); } catch (e) { document.execCommand("copy"); }
    const old = b.textContent;
    b.textContent = "Copied";
    setTimeout(() => { b.textContent = old; }, 1500);
  });

  // ---- Tabs (WAI-ARIA tabs pattern: arrows, Home, End) -------------------

  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  function selectTab(tab, focus) {
    tabs.forEach((t) => {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    });
    if (focus) tab.focus();
    if (tab.id === "tab-keys") loadKeys();
    if (tab.id === "tab-encryption") { loadEncryption(); loadAudit(true); }
    if (tab.id === "tab-overview") loadOverview();
  }
  tabs.forEach((t, i) => {
    t.addEventListener("click", () => selectTab(t, false));
    t.addEventListener("keydown", (ev) => {
      let j = -1;
      if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
      else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
      else if (ev.key === "Home") j = 0;
      else if (ev.key === "End") j = tabs.length - 1;
      if (j >= 0) { ev.preventDefault(); selectTab(tabs[j], true); }
    });
  });

  // ---- Sign in / out -----------------------------------------------------

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    clearErrors(form);
    const key = $("api-key").value.trim();
    if (!key) { showError(form, new ApiError("invalid_argument", "api_key: Enter an API key."), "api_key"); return; }
    busy($("signin-submit"), true);
    try {
      const resp = await api("OrgService", "GetOrg", {}, key);
      sessionStorage.setItem(KEY_STORAGE, key);
      $("api-key").value = "";
      enterApp(resp);
    } catch (err) {
      // Every sign-in failure concerns the key field (unknown key, wrong role).
      showError(form, err, "api_key");
    } finally {
      busy($("signin-submit"), false);
    }
  });

  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    // A reload drops every secret still shown in the page.
    location.replace("/");
  });

  function enterApp(resp) {
    applyOrg(resp);
    $("signin").hidden = true;
    $("app").hidden = false;
    $("who").hidden = false;
    selectTab($("tab-overview"), false);
    $("tab-overview").focus();
  }

  function applyOrg(resp) {
    state.org = resp.org || {};
    setText("org-title", state.org.name || "");
    setText("org-id", state.org.id ? "id " + state.org.id : "");
    setText("org-name-header", state.org.name || "");
    setText("ov-name", state.org.name || "");
    setText("ov-bytes", fmtBytes(resp.storedBytes));
    setText("ov-hits", fmtCount(resp.hits));
    setText("ov-misses", fmtCount(resp.misses));
    setText("ov-encryption", state.org.encryptionEnabled
      ? "Customer managed encryption is enabled: stored objects are sealed with your KMS key."
      : "Customer managed encryption is disabled. Enable it on the Encryption keys tab.");
    setText("dis-org-name", state.org.name || "");
  }

  async function loadOverview() {
    try { applyOrg(await api("OrgService", "GetOrg")); } catch (err) { handleLoadError(err); }
  }

  function handleLoadError(err) {
    if (err.code === "unauthenticated") {
      sessionStorage.removeItem(KEY_STORAGE);
      location.replace("/");
      return;
    }
    showError(null, err);
  }

  // ---- API keys ----------------------------------------------------------

  async function loadKeys() {
    let resp;
    try { resp = await api("OrgService", "ListApiKeys"); } catch (err) { handleLoadError(err); return; }
    const tbody = $("keys-table").querySelector("tbody");
    tbody.replaceChildren();
    const keys = resp.keys || [];
    if (!keys.length) emptyRow(tbody, 6, "No API keys.");
    keys.forEach((k) => {
      const tr = document.createElement("tr");
      cell(tr, k.label || "—");
      cell(tr, roleName(k.role));
      cell(tr, k.id, "mono");
      cell(tr, fmtTime(k.created), "nowrap");
      cell(tr, fmtTime(k.lastUsed, "never"), "nowrap");
      const td = cell(tr, "");
      {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "btn btn-small";
        b.textContent = "Revoke";
        b.setAttribute("aria-label", "Revoke key " + (k.label || k.id));
        b.addEventListener("click", () => revokeKey(b, k));
        td.appendChild(b);
      }
      tbody.appendChild(tr);
    });
  }

  // revokeKey asks for a second click before revoking.
  async function revokeKey(button, key) {
    if (!button.dataset.armed) {
      button.dataset.armed = "1";
      button.classList.add("btn-danger");
      button.textContent = "Confirm revoke";
      return;
    }
    busy(button, true);
    try {
      await api("OrgService", "RevokeApiKey", { id: key.id });
      await loadKeys();
    } catch (err) {
      showError(null, err);
      busy(button, false);
    }
  }

  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    clearErrors(form);
    const button = form.querySelector("button[type=submit]");
    busy(button, true);
    try {
      const resp = await api("OrgService", "CreateApiKey", { role: $("key-role").value, label: $("key-label").value.trim() });
      $("new-key-secret").value = resp.secret || "";
      $("new-key-flags").value = (resp.bazelFlags || []).map((f) => "build " + f).join("\n");
      $("new-key").hidden = false;
      $("new-key").focus();
      $("key-label").value = "";
      await loadKeys();
    } catch (err) {
      showError(form, err);
    } finally {
      busy(button, false);
    }
  });

  $("new-key-done").addEventListener("click", () => {
    $("new-key-secret").value = "";
    $("new-key-flags").value = "";
    $("new-key").hidden = true;
    $("key-label").focus();
  });

  // ---- Encryption --------------------------------------------------------

  async function loadEncryption() {
    try { applyConfig((await api("EncryptionService", "GetEncryptionConfig")).config || {}); } catch (err) { handleLoadError(err); }
  }

  function applyConfig(c) {
    state.config = c;
    const on = !!c.enabled;
    const badge = $("enc-state");
    badge.textContent = on ? "Enabled" : "Disabled";
    badge.className = "badge " + (on ? "badge-on" : "badge-off");
    setText("enc-key-id", c.keyId || "—");
    setText("enc-provider", c.provider || "—");
    setText("enc-key-uri", c.customerKeyUri || "—");
    setText("enc-created", on ? fmtTime(c.created) : "—");
    setText("enc-rewrapped", on ? fmtTime(c.lastRewrapped, "not yet") : "—");
    setText("enc-last-success", fmtTime(c.lastKmsSuccess, "never"));
    const failure = $("enc-last-failure");
    if (c.lastKmsFailure) {
      failure.textContent = fmtTime(c.lastKmsFailure) + (c.lastKmsFailureMessage ? " — " + c.lastKmsFailureMessage : "");
      failure.className = "status-failed";
    } else {
      failure.textContent = "none";
      failure.className = "";
    }
    $("enc-check-row").hidden = !on;
    $("enc-props").hidden = !on;
    $("enc-off-text").hidden = on;
    $("enc-enable-card").hidden = on;
    $("enc-disable-card").hidden = !on;
    setText("dis-key-id", c.keyId || "");
    setText("dis-ttl", fmtDuration(c.keyCacheTtlSeconds));
    if (state.org) { state.org.encryptionEnabled = on; }
    renderProviders(c.supportedProviders || []);
  }

  function renderProviders(providers) {
    const box = $("enc-providers");
    const current = (box.querySelector("input:checked") || {}).value;
    box.replaceChildren();
    providers.forEach((p, i) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "provider";
      input.value = p.name;
      input.checked = current ? current === p.name : i === 0;
      input.addEventListener("change", updateGrant);
      label.appendChild(input);
      label.appendChild(document.createTextNode(providerTitle(p.name)));
      box.appendChild(label);
    });
    updateGrant();
  }

  function providerTitle(name) {
    return { "gcp-kms": "Google Cloud KMS", "aws-kms": "AWS KMS", "local-kms": "Local key (testing)" }[name] || name;
  }

  function selectedProvider() {
    const name = (document.querySelector("#enc-providers input:checked") || {}).value;
    return ((state.config && state.config.supportedProviders) || []).find((p) => p.name === name);
  }

  // Typing a URI of another provider selects that provider.
  $("key-uri").addEventListener("input", () => {
    const scheme = $("key-uri").value.split("://")[0];
    const radio = document.querySelector('#enc-providers input[value="' + CSS.escape(scheme) + '"]');
    if (radio && !radio.checked) radio.checked = true;
    updateGrant();
  });

  // updateGrant shows what the customer must grant the operator for the
  // chosen provider, filled in from the key URI as far as it is typed.
  function updateGrant() {
    const p = selectedProvider();
    if (!p) return;
    $("key-uri").placeholder = p.uriExample || "";
    setText("key-uri-help", "Form: " + (p.uriExample || ""));
    const principal = p.operatorPrincipal || "";
    const uri = $("key-uri").value.trim();
    $("grant-principal").value = principal;
    $("grant-principal-row").hidden = !principal;
    $("grant-command-row").hidden = !principal;
    const principalFlag = { "gcp-kms": "--gcp_kms_principal", "aws-kms": "--aws_kms_principal" }[p.name];
    if (principalFlag && !principal) {
      // Nothing to copy: say so, and who can tell the identity to grant.
      setText("grant-text", "This server has no operator identity configured for " + providerTitle(p.name) +
        " (the operator sets " + principalFlag + "), so there is nothing to copy here. Ask the operator which " +
        (p.name === "gcp-kms" ? "service account to grant roles/cloudkms.cryptoKeyEncrypterDecrypter" :
          "principal to allow kms:Encrypt, kms:Decrypt and kms:DescribeKey") + " on your key.");
      $("grant-command").value = "";
      return;
    }
    if (p.name === "gcp-kms") {
      const m = /^gcp-kms:\/\/projects\/([^/]+)\/locations\/([^/]+)\/keyRings\/([^/]+)\/cryptoKeys\/([^/]+)$/.exec(uri) || [];
      setText("grant-text", "Let the operator's service account encrypt and decrypt with your key:");
      setText("grant-command-label", "gcloud command");
      $("grant-command").value =
        "gcloud kms keys add-iam-policy-binding " + (m[4] || "KEY") + " \\\n" +
        "  --project=" + (m[1] || "PROJECT") + " --location=" + (m[2] || "LOCATION") + " --keyring=" + (m[3] || "KEY_RING") + " \\\n" +
        "  --member=serviceAccount:" + principal + " \\\n" +
        "  --role=roles/cloudkms.cryptoKeyEncrypterDecrypter";
    } else if (p.name === "aws-kms") {
      setText("grant-text", "Add this statement to your key's key policy:");
      setText("grant-command-label", "Key policy statement");
      $("grant-command").value = JSON.stringify({
        Sid: "AllowSealcacheToUseTheKey",
        Effect: "Allow",
        Principal: { AWS: principal },
        Action: ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
        Resource: "*",
      }, null, 2);
    } else {
      setText("grant-text", principal ? "Grant this principal encrypt and decrypt on the key." :
        p.name === "local-kms" ?
          "Local keys are for trying CMEK: files of 32 random bytes in the server's key directory. The operator makes one " +
          "on the server's machine with \"sealcache kms create-local-key NAME\"; enter local-kms://NAME above. Nothing to grant." :
          "Nothing to grant.");
      setText("grant-command-label", "Grant");
      $("grant-command").value = "";
      $("grant-command-row").hidden = true;
    }
  }

  $("enable-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    clearErrors(form);
    const uri = $("key-uri").value.trim();
    if (!uri) {
      showError(form, new ApiError("invalid_argument", "customer_key_uri: Enter the URI of your KMS key."));
      return;
    }
    busy($("enable-submit"), true);
    try {
      applyConfig((await api("EncryptionService", "SetEncryptionConfig", { enabled: true, customerKeyUri: uri })).config || {});
      $("key-uri").value = "";
      $("enc-check").focus();
      loadAudit(true);
    } catch (err) {
      showError(form, err, "customer_key_uri");
      loadAudit(true); // failed attempts are audited too
    } finally {
      busy($("enable-submit"), false);
    }
  });

  $("confirm-name").addEventListener("input", () => {
    $("disable-submit").disabled = $("confirm-name").value !== ((state.org && state.org.name) || "\u0000");
  });

  $("disable-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    clearErrors(form);
    if ($("confirm-name").value !== state.org.name) {
      showError(form, new ApiError("invalid_argument", "confirm_name: Type the organization name exactly as shown."));
      return;
    }
    busy($("disable-submit"), true);
    try {
      applyConfig((await api("EncryptionService", "SetEncryptionConfig", { enabled: false })).config || {});
      $("confirm-name").value = "";
      $("key-uri").focus();
      loadAudit(true);
    } catch (err) {
      showError(form, err, "confirm_name");
    } finally {
      $("disable-submit").disabled = true;
    }
  });

  $("enc-check").addEventListener("click", async () => {
    const b = $("enc-check");
    busy(b, true);
    setText("enc-check-result", "Checking…");
    try {
      applyConfig((await api("EncryptionService", "CheckEncryptionKey")).config || {});
      setText("enc-check-result", "The key works.");
    } catch (err) {
      setText("enc-check-result", err.message);
      loadEncryption();
    } finally {
      busy(b, false);
      loadAudit(true);
    }
  });

  // ---- Audit log ---------------------------------------------------------

  async function loadAudit(first) {
    if (first) state.auditToken = "";
    let resp;
    try {
      resp = await api("OrgService", "ListAuditEvents", { pageSize: 20, pageToken: state.auditToken });
    } catch (err) { handleLoadError(err); return; }
    const tbody = $("audit-table").querySelector("tbody");
    if (first) tbody.replaceChildren();
    const events = resp.events || [];
    if (first && !events.length) emptyRow(tbody, 4, "No events yet.");
    events.forEach((e) => {
      const tr = document.createElement("tr");
      cell(tr, fmtTime(e.time), "nowrap");
      cell(tr, e.action || "", "mono");
      cell(tr, e.details || "");
      cell(tr, e.actorKeyId || "", "mono");
      tbody.appendChild(tr);
    });
    state.auditToken = resp.nextPageToken || "";
    $("audit-more").hidden = !state.auditToken;
  }
  $("audit-more").addEventListener("click", () => loadAudit(false));
  $("audit-refresh").addEventListener("click", () => loadAudit(true));

  // ---- Start -------------------------------------------------------------

  (async function start() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (!key) { $("api-key").focus(); return; }
    try {
      enterApp(await api("OrgService", "GetOrg", {}, key));
    } catch (err) {
      sessionStorage.removeItem(KEY_STORAGE);
      $("api-key").focus();
    }
  })();
})();
