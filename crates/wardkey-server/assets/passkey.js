(function () {
  "use strict";
  function b64uToBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bufToB64u(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function status(msg) { var el = document.getElementById("passkey-status"); if (el) el.textContent = msg; }
  async function post(url, body) {
    var r = await fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
    var data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new Error((data && data.detail) || ("HTTP " + r.status));
    return data;
  }
  async function signIn(btn) {
    try {
      status("Waiting for your passkey...");
      var opts = await post("/api/v1/auth/webauthn/challenge");
      var pk = opts.publicKey;
      pk.challenge = b64uToBuf(pk.challenge);
      (pk.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
      var cred = await navigator.credentials.get({ publicKey: pk });
      await post("/api/v1/auth/webauthn", {
        id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type, extensions: {},
        response: {
          authenticatorData: bufToB64u(cred.response.authenticatorData),
          clientDataJSON: bufToB64u(cred.response.clientDataJSON),
          signature: bufToB64u(cred.response.signature),
          userHandle: cred.response.userHandle ? bufToB64u(cred.response.userHandle) : null
        }
      });
      window.location.href = btn.getAttribute("data-next") || "/account";
    } catch (e) { status("Passkey not accepted: " + e.message); }
  }
  async function register() {
    try {
      status("Follow your browser's prompt...");
      var nameEl = document.getElementById("passkey-name");
      var opts = await post("/api/v1/me/factors/webauthn/challenge", { name: nameEl ? nameEl.value : null });
      var pk = opts.publicKey;
      pk.challenge = b64uToBuf(pk.challenge);
      pk.user.id = b64uToBuf(pk.user.id);
      (pk.excludeCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
      var cred = await navigator.credentials.create({ publicKey: pk });
      var done = await post("/api/v1/me/factors/webauthn", {
        id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type, extensions: {},
        response: {
          attestationObject: bufToB64u(cred.response.attestationObject),
          clientDataJSON: bufToB64u(cred.response.clientDataJSON)
        }
      });
      var msg = "Passkey registered.";
      if (done && done.recovery_codes) msg += " Recovery codes (shown once): " + done.recovery_codes.join("  ");
      status(msg);
      var link = document.createElement("a"); link.href = "/account"; link.textContent = " Continue";
      var el = document.getElementById("passkey-status"); if (el) el.appendChild(link);
    } catch (e) { status("Passkey not registered: " + e.message); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var a = document.getElementById("passkey-signin");
    if (a) a.addEventListener("click", function () { signIn(a); });
    var b = document.getElementById("passkey-register");
    if (b) b.addEventListener("click", register);
  });
})();
