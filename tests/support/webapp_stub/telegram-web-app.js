/* A test stand-in for https://telegram.org/js/telegram-web-app.js: no network, same surface the Mini App uses.
 * Like Telegram's own script it reads the launch parameters from the page's URL fragment:
 * #tgWebAppData=<url-encoded initData>&tgWebAppThemeParams=<url-encoded JSON>&tgWebAppPlatform=...
 * Calls are recorded in window.__telegramStub (calls: method names; sent: sendData payloads). */
"use strict";

(function () {
  const launch = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const initData = launch.get("tgWebAppData") || "";
  let themeParams = {};
  try { themeParams = JSON.parse(launch.get("tgWebAppThemeParams") || "{}"); } catch (e) { themeParams = {}; }

  const initDataUnsafe = {};
  new URLSearchParams(initData).forEach((value, key) => {
    if (/^[[{]/.test(value)) {
      try { initDataUnsafe[key] = JSON.parse(value); return; } catch (e) { /* keep the raw value */ }
    }
    initDataUnsafe[key] = /^\d+$/.test(value) && key === "auth_date" ? Number(value) : value;
  });

  const record = { calls: [], sent: [], handlers: {} };
  window.__telegramStub = record;

  function call(name) { return function () { record.calls.push(name); }; }

  function button(name) {
    return {
      isVisible: false,
      text: "",
      show() { this.isVisible = true; record.calls.push(name + ".show"); return this; },
      hide() { this.isVisible = false; record.calls.push(name + ".hide"); return this; },
      setText(text) { this.text = text; return this; },
      setParams() { return this; },
      enable() { return this; },
      disable() { return this; },
      showProgress() { return this; },
      hideProgress() { return this; },
      onClick(handler) { (record.handlers[name] = record.handlers[name] || []).push(handler); return this; },
      offClick() { record.handlers[name] = []; return this; },
    };
  }

  const root = document.documentElement.style;
  Object.keys(themeParams).forEach((key) => root.setProperty("--tg-theme-" + key.replace(/_/g, "-"), themeParams[key]));

  window.Telegram = {
    WebApp: {
      initData,
      initDataUnsafe,
      version: "8.0",
      platform: launch.get("tgWebAppPlatform") || "unknown",
      colorScheme: launch.get("tgWebAppColorScheme") || "light",
      themeParams,
      isExpanded: false,
      viewportHeight: window.innerHeight,
      viewportStableHeight: window.innerHeight,
      ready: call("ready"),
      expand() { this.isExpanded = true; record.calls.push("expand"); },
      close: call("close"),
      sendData(data) { record.sent.push(String(data)); record.calls.push("sendData"); },
      onEvent(event, handler) { (record.handlers[event] = record.handlers[event] || []).push(handler); },
      offEvent(event) { record.handlers[event] = []; },
      MainButton: button("MainButton"),
      BackButton: button("BackButton"),
      HapticFeedback: {
        impactOccurred: call("impactOccurred"),
        notificationOccurred: call("notificationOccurred"),
        selectionChanged: call("selectionChanged"),
      },
    },
  };
})();
