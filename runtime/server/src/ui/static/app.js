// LeForge admin UI: the live parts of the server-rendered pages. Every change goes through
// /api/v1 with the session cookie and the CSRF token from the page's <meta>. User data is
// only ever inserted with textContent (never innerHTML), so nothing from the API can run.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const CSRF = csrfMeta ? csrfMeta.content : "";

  // ---------- helpers ----------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function pretty(v) {
    return JSON.stringify(v, null, 2);
  }

  function ms(v) {
    if (v === null || v === undefined) return "—";
    return v < 1000 ? v + " ms" : (v / 1000).toFixed(1) + " s";
  }

  // fetch against /api/v1: JSON in and out; never throws for HTTP errors.
  async function api(method, path, body, opts) {
    const headers = { "X-CSRF-Token": CSRF, Accept: "application/json" };
    let payload = body;
    if (body !== undefined && !(body instanceof FormData) && !(opts && opts.raw)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    if (opts && opts.contentType) headers["Content-Type"] = opts.contentType;
    let resp;
    try {
      resp = await fetch("/api/v1" + path, {
        method,
        headers,
        body: payload,
        credentials: "same-origin",
      });
    } catch (e) {
      return { status: 0, body: { success: false, error: { code: "NETWORK", message: String(e) } } };
    }
    if (resp.status === 401) {
      location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
    }
    let json = null;
    try {
      json = await resp.json();
    } catch (e) {
      json = { success: false, error: { code: "BAD_RESPONSE", message: "HTTP " + resp.status } };
    }
    return { status: resp.status, body: json };
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((p) => (p.textContent = ""));
    form.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
    form.querySelectorAll(".form-error").forEach((b) => {
      b.hidden = true;
      b.textContent = "";
    });
  }

  function showBox(box, text) {
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
  }

  // Finds the error slot for an API field path: "config.max_steps", "tools[2]" -> "tools".
  function slotFor(form, field) {
    let f = String(field || "");
    while (f) {
      const slot = form.querySelector('[data-error-for="' + CSS.escape(f) + '"]');
      if (slot) return slot;
      const cut = Math.max(f.lastIndexOf("["), f.lastIndexOf("."));
      if (cut <= 0) break;
      f = f.slice(0, cut);
    }
    return null;
  }

  // Shows an API error: each detail next to its field, the message on top.
  function showApiError(form, boxId, err) {
    const e = (err && err.error) || { message: "unknown error" };
    const box = document.getElementById(boxId);
    const details = Array.isArray(e.details) ? e.details : [];
    const unplaced = [];
    for (const d of details) {
      const slot = d && d.field !== undefined ? slotFor(form, d.field) : null;
      if (slot) {
        slot.textContent = (slot.textContent ? slot.textContent + " " : "") + d.message;
        const input = document.querySelector('[aria-describedby~="' + CSS.escape(slot.id) + '"]');
        if (input) input.setAttribute("aria-invalid", "true");
      } else if (d && d.message) {
        unplaced.push((d.field ? d.field + ": " : "") + d.message);
      }
    }
    let text = (e.code ? e.code + ": " : "") + (e.message || "");
    if (unplaced.length) text += " — " + unplaced.join("; ");
    showBox(box, text);
    focusFirstInvalid(form, box);
  }

  // Brings the first field the server complained about (else the message) into view.
  function focusFirstInvalid(form, box) {
    const first = form.querySelector('[aria-invalid="true"]');
    if (first) {
      first.focus();
      first.scrollIntoView({ block: "center" });
    } else if (box) box.scrollIntoView({ block: "center" });
  }

  function fieldError(form, field, message) {
    const slot = slotFor(form, field);
    if (slot) slot.textContent = message;
    const input = slot && document.querySelector('[aria-describedby~="' + CSS.escape(slot.id) + '"]');
    if (input) input.setAttribute("aria-invalid", "true");
  }

  // Parses an optional JSON box; returns {ok, value}.
  function parseJson(text, want) {
    if (!text.trim()) return { ok: true, value: undefined };
    try {
      const v = JSON.parse(text);
      if (want === "object" && (v === null || typeof v !== "object" || Array.isArray(v)))
        return { ok: false, message: "must be a JSON object ({ … })" };
      if (want === "array" && !Array.isArray(v)) return { ok: false, message: "must be a JSON array ([ … ])" };
      return { ok: true, value: v };
    } catch (e) {
      return { ok: false, message: "is not valid JSON: " + e.message };
    }
  }

  // The shared "are you sure" dialog; resolves true on confirm.
  function confirmAction(text, okLabel) {
    const dialog = document.getElementById("confirm");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(text));
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = okLabel || "Delete";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      document.getElementById("confirm-cancel").focus();
    });
  }

  function busy(button, on) {
    if (!button) return;
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
  }

  // ---------- pages ----------

  const pages = {};

  pages.agents = function () {
    document.querySelectorAll("[data-delete-agent]").forEach((b) =>
      b.addEventListener("click", async () => {
        const ok = await confirmAction('Delete the agent "' + b.dataset.name + '"? Its runs stay readable.');
        if (!ok) return;
        const r = await api("DELETE", "/agents/" + encodeURIComponent(b.dataset.deleteAgent));
        if (r.status === 200) {
          b.closest("li.card").remove();
        } else {
          showBox(document.getElementById("agents-error"), r.body.error.code + ": " + r.body.error.message);
        }
      })
    );
  };

  pages["agent-form"] = function () {
    const form = document.getElementById("agent-form");
    const provider = document.getElementById("f-provider");
    const models = document.getElementById("model-options");
    const modelHint = document.getElementById("model-hint");

    async function loadModels() {
      models.textContent = "";
      const r = await api("GET", "/llm/models/" + encodeURIComponent(provider.value));
      if (r.status === 200 && Array.isArray(r.body.data)) {
        for (const m of r.body.data) models.append(el("option", { value: m.id }));
        modelHint.textContent = r.body.data.length + " models offered by " + provider.value + "; any id may be typed.";
      } else {
        modelHint.textContent = "No model list from " + provider.value + ": type the model id or alias.";
      }
    }
    provider.addEventListener("change", loadModels);
    loadModels();

    // Scripts available for hooks, when the server has the scripts API.
    api("GET", "/scripts?limit=200").then((r) => {
      const hint = document.getElementById("hooks-hint");
      if (r.status === 200 && Array.isArray(r.body.data)) {
        // Agents store script ids; show their names (the API accepts either).
        const byId = new Map(r.body.data.map((s) => [s.id, s.name]));
        const field = document.getElementById("f-hooks");
        field.value = field.value
          .split(",")
          .map((h) => h.trim())
          .filter(Boolean)
          .map((h) => byId.get(h) || h)
          .join(", ");
        hint.textContent = r.body.data.length
          ? "Available: " + r.body.data.map((s) => s.name).join(", ")
          : "No scripts yet.";
      }
    });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const edit = form.dataset.mode === "edit";
      const val = (name) => form.elements[name].value;
      const body = {
        name: val("name").trim(),
        description: val("description").trim() || (edit ? null : undefined),
        provider: val("provider"),
        model: val("model").trim(),
        system_prompt: val("system_prompt"),
        tools: [...form.querySelectorAll('input[name="tools"]:checked')].map((i) => i.value),
        is_public: form.elements["is_public"].checked,
        api_key_required: form.elements["api_key_required"].checked,
        allowed_api_keys: [...form.querySelectorAll('input[name="allowed_api_keys"]:checked')].map((i) => i.value),
        config: { retry_on_error: form.elements["config.retry_on_error"].checked },
      };
      let bad = false;
      for (const k of ["max_steps", "max_tokens", "temperature", "timeout_ms", "max_retries", "max_total_tokens"]) {
        const raw = val("config." + k).trim();
        if (!raw) {
          if (k !== "max_total_tokens") {
            fieldError(form, "config." + k, "is required");
            bad = true;
          }
          continue;
        }
        const n = Number(raw);
        if (!Number.isFinite(n)) {
          fieldError(form, "config." + k, "must be a number");
          bad = true;
        } else body.config[k] = n;
      }
      const schema = parseJson(val("output_schema"), "object");
      if (!schema.ok) {
        fieldError(form, "output_schema", schema.message);
        bad = true;
      } else if (schema.value !== undefined) body.output_schema = schema.value;
      else if (edit) body.output_schema = null;
      const hooks = val("hooks")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      // Only send hooks when used, so this form also works with servers without Rhai hooks.
      if (hooks.length || form.dataset.hasHooks === "1") body.hooks = hooks;
      if (bad) {
        showBox(document.getElementById("agent-form-error"), "Please correct the marked fields.");
        focusFirstInvalid(form);
        return;
      }
      const button = document.getElementById("agent-save");
      busy(button, true);
      const r = edit
        ? await api("PUT", "/agents/" + encodeURIComponent(form.dataset.agent), body)
        : await api("POST", "/agents", body);
      busy(button, false);
      if (r.status === 200 || r.status === 201) {
        location.href = "/agents";
      } else {
        showApiError(form, "agent-form-error", r.body);
      }
    });
  };

  // Reads a text/event-stream body, calling onEvent(name, data) per event.
  async function readSse(resp, onEvent) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        let parsed;
        try {
          parsed = JSON.parse(data.join("\n"));
        } catch (e) {
          parsed = data.join("\n");
        }
        onEvent(name, parsed);
      }
    }
  }

  function badge(text, cls) {
    return el("span", { class: "badge" + (cls ? " " + cls : "") }, text);
  }

  function stepItem(ev) {
    const li = el("li", { class: "step running", "data-step": ev.step });
    const head = el(
      "div",
      { class: "step-head" },
      el("span", { class: "step-no" }, "#" + ev.step),
      el("strong", { class: "wrap" }, ev.tool + " → " + ev.action),
      el("span", { class: "badge step-state" }, "running…")
    );
    li.append(head);
    li.append(el("details", {}, el("summary", {}, "Input"), el("pre", { class: "json" }, pretty(ev.input))));
    return li;
  }

  pages.run = function () {
    const form = document.getElementById("run-form");
    const agent = form.dataset.agent;
    const start = document.getElementById("run-start");
    const cancel = document.getElementById("run-cancel");
    const result = document.getElementById("run-result");
    const steps = document.getElementById("run-steps");
    const badges = document.getElementById("run-badges");
    const finalBox = document.getElementById("run-final");
    const output = document.getElementById("run-output");
    const errorBox = document.getElementById("run-error");
    const trace = document.getElementById("run-trace");
    let runId = null;

    function setBadges(status, run) {
      badges.textContent = "";
      badges.append(badge(status, "status-" + status));
      badges.dataset.status = status;
      if (run) {
        const m = run.metrics || {};
        badges.append(badge("duration " + ms(m.duration_ms)));
        badges.append(badge((m.total_steps || 0) + (m.total_steps === 1 ? " step" : " steps")));
        badges.append(badge((m.tokens_input || 0) + " in / " + (m.tokens_output || 0) + " out tokens"));
      }
    }

    function finish(run) {
      setBadges(run.status, run);
      if (run.output !== null && run.output !== undefined) {
        output.textContent = pretty(run.output);
        finalBox.hidden = false;
      }
      if (run.error_code || run.error_message) {
        showBox(errorBox, (run.error_code ? run.error_code + ": " : "") + (run.error_message || ""));
      }
      trace.href = "/runs/" + run.run_id;
      trace.hidden = false;
      cancel.disabled = true;
      busy(start, false);
    }

    cancel.addEventListener("click", async () => {
      if (!runId) return;
      busy(cancel, true);
      const r = await api("POST", "/runs/" + runId + "/cancel");
      busy(cancel, false);
      cancel.disabled = true;
      if (r.status !== 200) showBox(errorBox, r.body.error.code + ": " + r.body.error.message);
    });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const input = form.elements["input"].value;
      if (!input.trim()) {
        fieldError(form, "input", "is required");
        return;
      }
      const data = parseJson(form.elements["data"].value, "object");
      if (!data.ok) {
        fieldError(form, "data", data.message);
        return;
      }
      const body = { input, stream: true };
      if (data.value !== undefined) body.data = data.value;
      steps.textContent = "";
      output.textContent = "";
      finalBox.hidden = true;
      errorBox.hidden = true;
      trace.hidden = true;
      runId = null;
      result.hidden = false;
      setBadges("pending");
      busy(start, true);
      let resp;
      try {
        resp = await fetch("/api/v1/agents/" + encodeURIComponent(agent) + "/run", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRF-Token": CSRF },
          body: JSON.stringify(body),
        });
      } catch (e) {
        busy(start, false);
        showBox(errorBox, "Network error: " + e);
        return;
      }
      const type = resp.headers.get("content-type") || "";
      if (!type.startsWith("text/event-stream")) {
        busy(start, false);
        let j = null;
        try {
          j = await resp.json();
        } catch (e) {
          j = { error: { code: "HTTP_" + resp.status, message: resp.statusText } };
        }
        result.hidden = true;
        showApiError(form, "run-form-error", j);
        return;
      }
      cancel.disabled = false;
      let finished = false;
      await readSse(resp, (name, d) => {
        if (name === "run_started") {
          runId = d.run_id;
          setBadges("running");
        } else if (name === "step_started") {
          if (!steps.querySelector('[data-step="' + d.step + '"]')) steps.append(stepItem(d));
        } else if (name === "step_completed") {
          let li = steps.querySelector('[data-step="' + d.step + '"]');
          if (!li) {
            li = stepItem(d);
            steps.append(li);
          }
          li.classList.remove("running");
          const state = li.querySelector(".step-state");
          state.textContent = ms(d.duration_ms);
          if (d.error) {
            li.classList.add("error");
            li.append(el("p", { class: "step-error" }, d.error));
          }
          if (d.output !== null && d.output !== undefined) {
            li.append(el("details", {}, el("summary", {}, "Output"), el("pre", { class: "json" }, pretty(d.output))));
          }
        } else if (name === "run_completed" || name === "run_failed") {
          finished = true;
          finish(d);
        }
      });
      if (!finished) {
        busy(start, false);
        cancel.disabled = true;
        showBox(errorBox, "The event stream ended early; see the run's trace for its state.");
        if (runId) {
          trace.href = "/runs/" + runId;
          trace.hidden = false;
        }
      }
    });
  };

  pages.trace = function () {
    const cancel = document.getElementById("trace-cancel");
    if (cancel) {
      cancel.addEventListener("click", async () => {
        busy(cancel, true);
        await api("POST", "/runs/" + cancel.dataset.run + "/cancel");
        location.reload();
      });
    }
    // A live run: follow its events and reload when it ends.
    const badges = document.getElementById("trace-badges");
    if (badges && badges.dataset.terminal === "0" && window.EventSource) {
      const es = new EventSource("/api/v1/runs/" + badges.dataset.run + "/events");
      const done = () => {
        es.close();
        location.reload();
      };
      es.addEventListener("run_completed", done);
      es.addEventListener("run_failed", done);
      es.addEventListener("step_completed", () => {});
    }
  };

  pages.history = function () {
    const select = document.getElementById("status-filter");
    if (select) select.addEventListener("change", () => select.form.submit());
  };

  pages.forgehooks = function () {
    const upload = document.getElementById("upload-form");
    upload.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(upload);
      const ok = document.getElementById("upload-ok");
      ok.hidden = true;
      const wasm = document.getElementById("upload-wasm").files[0];
      if (!wasm) {
        showBox(document.getElementById("upload-error"), "Choose a .wasm file first.");
        return;
      }
      const fd = new FormData();
      fd.append("wasm", wasm, wasm.name);
      const manifest = document.getElementById("upload-manifest").files[0];
      if (manifest) fd.append("manifest", manifest, manifest.name);
      const button = document.getElementById("upload-submit");
      busy(button, true);
      const r = await api("POST", "/forgehooks", fd);
      busy(button, false);
      if (r.status === 201) {
        ok.textContent = "Installed " + r.body.data.id + " " + r.body.data.version + ". Reloading…";
        ok.hidden = false;
        setTimeout(() => location.reload(), 600);
      } else showApiError(upload, "upload-error", r.body);
    });

    const mform = document.getElementById("manifest-form");
    mform.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(mform);
      const parsed = parseJson(document.getElementById("manifest-json").value, "object");
      if (!parsed.ok || parsed.value === undefined) {
        showBox(document.getElementById("manifest-error"), "The manifest " + (parsed.message || "is required"));
        return;
      }
      const button = document.getElementById("manifest-submit");
      busy(button, true);
      const r = await api("POST", "/forgehooks", parsed.value);
      busy(button, false);
      if (r.status === 201) {
        const ok = document.getElementById("manifest-ok");
        ok.textContent = "Installed " + r.body.data.id + ". Reloading…";
        ok.hidden = false;
        setTimeout(() => location.reload(), 600);
      } else showApiError(mform, "manifest-error", r.body);
    });

    document.querySelectorAll("[data-hook-action]").forEach((b) =>
      b.addEventListener("click", async () => {
        const id = b.dataset.hookId;
        const action = b.dataset.hookAction;
        if (action === "delete" && !(await confirmAction('Remove the ForgeHook "' + b.dataset.name + '"?'))) return;
        busy(b, true);
        const r =
          action === "delete"
            ? await api("DELETE", "/forgehooks/" + encodeURIComponent(id))
            : await api("POST", "/forgehooks/" + encodeURIComponent(id) + "/" + action);
        busy(b, false);
        if (r.status === 200) location.reload();
        else showBox(document.getElementById("forgehooks-error"), r.body.error.code + ": " + r.body.error.message);
      })
    );

    document.querySelectorAll("form.try-it").forEach((f) =>
      f.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const box = f.querySelector(".form-error");
        const out = f.querySelector(".try-result");
        box.hidden = true;
        out.hidden = true;
        const parsed = parseJson(f.querySelector("textarea").value, "object");
        if (!parsed.ok) {
          showBox(box, "The input " + parsed.message);
          return;
        }
        const path =
          "/forgehooks/" + encodeURIComponent(f.dataset.hook) + "/invoke/" + encodeURIComponent(f.dataset.endpoint);
        const r = await api("POST", path, parsed.value === undefined ? {} : parsed.value);
        if (r.status === 200) {
          out.textContent = pretty(r.body.data.output) + "\n\n(" + ms(r.body.data.duration_ms) + ")";
          out.hidden = false;
        } else {
          const e = r.body.error || {};
          let text = (e.code || "") + ": " + (e.message || "");
          if (e.details) text += "\n" + pretty(e.details);
          showBox(box, text);
        }
      })
    );
  };

  pages["mcp-servers"] = function () {
    const form = document.getElementById("mcp-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const body = {
        name: document.getElementById("mcp-name").value.trim(),
        url: document.getElementById("mcp-url").value.trim(),
      };
      const headers = parseJson(document.getElementById("mcp-headers").value, "object");
      if (!headers.ok) {
        fieldError(form, "headers", "The headers " + headers.message);
        return;
      }
      if (headers.value !== undefined) body.headers = headers.value;
      const timeout = document.getElementById("mcp-timeout").value;
      if (timeout) body.timeout_ms = Number(timeout);
      const button = document.getElementById("mcp-submit");
      busy(button, true);
      const r = await api("POST", "/mcp-servers", body);
      busy(button, false);
      if (r.status === 201) {
        const ok = document.getElementById("mcp-ok");
        ok.textContent = "Registered " + r.body.data.name + " with " + r.body.data.tools.length + " tools. Reloading…";
        ok.hidden = false;
        setTimeout(() => location.reload(), 600);
      } else showApiError(form, "mcp-error", r.body);
    });
    document.querySelectorAll("[data-mcp-action]").forEach((b) =>
      b.addEventListener("click", async () => {
        const name = b.dataset.mcpName;
        const action = b.dataset.mcpAction;
        if (action === "delete" && !(await confirmAction('Remove the MCP server "' + name + '"? Agents that use it stop working.'))) return;
        busy(b, true);
        const path = "/mcp-servers/" + encodeURIComponent(name);
        const r = action === "delete" ? await api("DELETE", path) : await api("POST", path + "/refresh");
        busy(b, false);
        if (r.status === 200) location.reload();
        else showBox(document.getElementById("mcp-servers-error"), r.body.error.code + ": " + r.body.error.message);
      })
    );
  };

  pages.keys = function () {
    const form = document.getElementById("key-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const body = { name: form.elements["name"].value.trim(), scope: form.elements["scope"].value };
      if (!body.name) {
        fieldError(form, "name", "is required");
        return;
      }
      const button = document.getElementById("key-create");
      busy(button, true);
      const r = await api("POST", "/api-keys", body);
      busy(button, false);
      if (r.status !== 201) {
        showApiError(form, "key-form-error", r.body);
        return;
      }
      const k = r.body.data;
      document.getElementById("key-plain").value = k.key;
      document.getElementById("key-created").hidden = false;
      document.getElementById("key-plain").select();
      const tbody = document.querySelector("#keys-table tbody");
      const row = el(
        "tr",
        { "data-key": k.id },
        el("td", { class: "wrap", "data-label": "Name" }, k.name),
        el("td", { "data-label": "Prefix" }, el("code", {}, k.prefix + "…")),
        el("td", { "data-label": "Scope" }, badge(k.scope)),
        el("td", { "data-label": "Created" }, "just now"),
        el("td", { "data-label": "Last used" }, "never"),
        el("td", { "data-label": "State" }, revokeButton(k.id, k.name))
      );
      tbody.prepend(row);
      form.reset();
    });

    document.getElementById("key-copy").addEventListener("click", async () => {
      const input = document.getElementById("key-plain");
      const said = document.getElementById("key-copied");
      try {
        await navigator.clipboard.writeText(input.value);
        said.textContent = "Copied to the clipboard.";
      } catch (e) {
        input.select();
        said.textContent = document.execCommand("copy") ? "Copied to the clipboard." : "Select the key and copy it.";
      }
    });

    function revokeButton(id, name) {
      const b = el("button", { class: "danger", type: "button", "data-revoke-key": id, "data-name": name }, "Revoke");
      b.addEventListener("click", () => revoke(b));
      return b;
    }

    async function revoke(b) {
      const ok = await confirmAction('Revoke the key "' + b.dataset.name + '"? It stops working at once.', "Revoke");
      if (!ok) return;
      const r = await api("DELETE", "/api-keys/" + b.dataset.revokeKey);
      if (r.status === 200) {
        const td = b.parentElement;
        td.textContent = "";
        td.append(badge("revoked", "disabled"));
      } else showBox(document.getElementById("keys-error"), r.body.error.code + ": " + r.body.error.message);
    }
    document.querySelectorAll("[data-revoke-key]").forEach((b) => b.addEventListener("click", () => revoke(b)));
  };

  pages.scripts = async function () {
    const r = await api("GET", "/scripts?limit=200");
    const table = document.getElementById("scripts-table");
    if (r.status !== 200) {
      showBox(
        document.getElementById("scripts-error"),
        r.status === 404 ? "This server has no scripts API." : r.body.error.code + ": " + r.body.error.message
      );
      return;
    }
    const list = r.body.data || [];
    if (!list.length) {
      document.getElementById("scripts-empty").hidden = false;
      return;
    }
    const tbody = table.querySelector("tbody");
    for (const s of list) {
      tbody.append(
        el(
          "tr",
          { "data-script": s.name },
          el("td", { class: "wrap", "data-label": "Name" }, el("a", { href: "/scripts/" + encodeURIComponent(s.name) }, s.name)),
          el("td", { class: "wrap", "data-label": "Description" }, s.description || ""),
          el("td", { "data-label": "Version" }, s.version === undefined ? "" : String(s.version)),
          el("td", { "data-label": "Updated" }, (s.updated_at || "").replace("T", " ").slice(0, 19))
        )
      );
    }
    table.hidden = false;
  };

  pages["script-edit"] = async function () {
    const form = document.getElementById("script-form");
    const source = document.getElementById("script-source");
    const gutter = document.getElementById("script-gutter");
    const errors = document.getElementById("script-errors");
    let current = form.dataset.script || null;
    let errorLines = new Set();

    function renderGutter() {
      const n = source.value.split("\n").length;
      gutter.textContent = "";
      for (let i = 1; i <= n; i++) {
        gutter.append(el("span", { class: errorLines.has(i) ? "line error" : "line", "data-line": i }, String(i)));
        gutter.append("\n");
      }
      gutter.scrollTop = source.scrollTop;
    }
    source.addEventListener("input", renderGutter);
    source.addEventListener("scroll", () => (gutter.scrollTop = source.scrollTop));

    function showCompileErrors(details) {
      errors.textContent = "";
      errorLines = new Set();
      for (const d of details) {
        if (d.line === undefined) continue;
        errorLines.add(d.line);
        const li = el(
          "li",
          { "data-line": d.line },
          el("button", { type: "button", class: "link" }, "Line " + d.line + (d.column ? ", column " + d.column : "")),
          ": " + d.message
        );
        li.querySelector("button").addEventListener("click", () => goToLine(d.line, d.column));
        errors.append(li);
      }
      renderGutter();
    }

    function goToLine(line, column) {
      const lines = source.value.split("\n");
      let pos = 0;
      for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
      pos += Math.max(0, (column || 1) - 1);
      source.focus();
      source.setSelectionRange(pos, pos);
    }

    if (current) {
      const r = await api("GET", "/scripts/" + encodeURIComponent(current));
      if (r.status === 200) {
        const s = r.body.data;
        form.elements["name"].value = s.name || "";
        form.elements["description"].value = s.description || "";
        source.value = s.source || "";
        document.getElementById("script-title").textContent = "Edit script " + s.name + (s.version ? " (v" + s.version + ")" : "");
      } else {
        showApiError(form, "script-form-error", r.body);
      }
    }
    renderGutter();

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      errors.textContent = "";
      errorLines = new Set();
      document.getElementById("script-ok").hidden = true;
      const body = { name: form.elements["name"].value.trim(), source: source.value };
      const desc = form.elements["description"].value.trim();
      if (desc) body.description = desc;
      const button = document.getElementById("script-save");
      busy(button, true);
      const r = current
        ? await api("PUT", "/scripts/" + encodeURIComponent(current), body)
        : await api("POST", "/scripts", body);
      busy(button, false);
      if (r.status === 200 || r.status === 201) {
        if (!current) {
          location.href = "/scripts/" + encodeURIComponent(r.body.data.name);
          return;
        }
        current = r.body.data.name;
        const ok = document.getElementById("script-ok");
        ok.textContent = "Saved" + (r.body.data.version ? " as version " + r.body.data.version : "") + ".";
        ok.hidden = false;
        renderGutter();
        return;
      }
      const details = (r.body.error && r.body.error.details) || [];
      if (Array.isArray(details) && details.some((d) => d && d.line !== undefined)) {
        showCompileErrors(details);
        showBox(document.getElementById("script-form-error"), r.body.error.code + ": " + r.body.error.message);
      } else {
        showApiError(form, "script-form-error", r.body);
      }
    });

    const del = document.getElementById("script-delete");
    if (del) {
      del.addEventListener("click", async () => {
        if (!(await confirmAction('Delete the script "' + current + '"?'))) return;
        const r = await api("DELETE", "/scripts/" + encodeURIComponent(current));
        if (r.status === 200) location.href = "/scripts";
        else showApiError(form, "script-form-error", r.body);
      });
    }

    const test = document.getElementById("script-test");
    if (test) {
      test.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        clearErrors(test);
        const out = document.getElementById("test-result");
        out.hidden = true;
        const args = parseJson(test.elements["args"].value, "array");
        if (!args.ok) {
          fieldError(test, "args", args.message);
          return;
        }
        const r = await api("POST", "/scripts/" + encodeURIComponent(current) + "/test", {
          hook: test.elements["hook"].value,
          args: args.value || [],
        });
        if (r.status === 200) {
          out.textContent = pretty(r.body.data);
          out.hidden = false;
        } else showApiError(test, "script-test-error", r.body);
      });
    }
  };

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    if (pages[page]) pages[page]();
  });
})();
