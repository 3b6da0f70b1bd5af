/* A test stand-in for https://telegram.org/js/telegram-web-app.js: no network, same surface the Mini App uses.
 * Like Telegram's own script it reads the launch parameters from the page's URL fragment:
 * #tgWebAppData=<url-encoded initData>&tgWebAppThemeParams=<url-encoded JSON>&tgWebAppPlatform=...
 * &tgWebAppColorScheme=light|dark&tgWebAppVersion=...
 * Everything is recorded in window.__telegramStub: `calls` (method names, in order), `log` ({name, args}),
 * `sent` (sendData payloads), `confirms` (showConfirm messages), `handlers`. Tests drive Telegram's side with
 * clickMainButton(), clickBackButton(), answerConfirm(true|false) and changeTheme(params, scheme). */
"use strict";

(function () {
  const launch = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const initData = launch.get("tgWebAppData") || "";
  const version = launch.get("tgWebAppVersion") || "8.0";
  let themeParams = {};
  try { themeParams = JSON.parse(launch.get("tgWebAppThemeParams") || "{}"); } catch (e) { themeParams = {}; }

  const initDataUnsafe = {};
  new URLSearchParams(initData).forEach((value, key) => {
    if (/^[[{]/.test(value)) {
      try { initDataUnsafe[key] = JSON.parse(value); return; } catch (e) { /* keep the raw value */ }
    }
    initDataUnsafe[key] = /^\d+$/.test(value) && key === "auth_date" ? Number(value) : value;
  });

  const record = { calls: [], log: [], sent: [], confirms: [], alerts: [], handlers: {}, confirmAnswer: true };
  window.__telegramStub = record;

  function note(name, args) {
    record.calls.push(name);
    record.log.push({ name, args: Array.from(args || []) });
  }

  function call(name) { return function () { note(name, arguments); }; }

  function fire(event) {
    (record.handlers[event] || []).slice().forEach((handler) => handler.call(window.Telegram.WebApp));
  }

  function button(name, event) {
    return {
      isVisible: false,
      isActive: true,
      isProgressVisible: false,
      text: name === "MainButton" ? "CONTINUE" : "",
      color: themeParams.button_color || "#2481cc",
      textColor: themeParams.button_text_color || "#ffffff",
      show() { this.isVisible = true; note(name + ".show"); return this; },
      hide() { this.isVisible = false; note(name + ".hide"); return this; },
      setText(text) { this.text = String(text); note(name + ".setText", [text]); return this; },
      setParams(params) {
        note(name + ".setParams", [params]);
        if ("text" in params) this.text = String(params.text);
        if ("color" in params) this.color = params.color;
        if ("text_color" in params) this.textColor = params.text_color;
        if ("is_active" in params) this.isActive = !!params.is_active;
        if ("is_visible" in params) this.isVisible = !!params.is_visible;
        return this;
      },
      enable() { this.isActive = true; note(name + ".enable"); return this; },
      disable() { this.isActive = false; note(name + ".disable"); return this; },
      showProgress() { this.isProgressVisible = true; note(name + ".showProgress"); return this; },
      hideProgress() { this.isProgressVisible = false; note(name + ".hideProgress"); return this; },
      onClick(handler) { (record.handlers[event] = record.handlers[event] || []).push(handler); return this; },
      offClick(handler) {
        record.handlers[event] = (record.handlers[event] || []).filter((h) => h !== handler);
        return this;
      },
    };
  }

  function setThemeVariables() {
    const root = document.documentElement.style;
    Object.keys(themeParams).forEach((key) => root.setProperty("--tg-theme-" + key.replace(/_/g, "-"), themeParams[key]));
  }
  setThemeVariables();

  const webApp = {
    initData,
    initDataUnsafe,
    version,
    platform: launch.get("tgWebAppPlatform") || "unknown",
    colorScheme: launch.get("tgWebAppColorScheme") || "light",
    themeParams,
    headerColor: themeParams.bg_color || "#ffffff",
    backgroundColor: themeParams.bg_color || "#ffffff",
    bottomBarColor: themeParams.secondary_bg_color || "#ffffff",
    isExpanded: false,
    isClosingConfirmationEnabled: false,
    isVerticalSwipesEnabled: true,
    viewportHeight: window.innerHeight,
    viewportStableHeight: window.innerHeight,
    isVersionAtLeast(wanted) {
      const a = String(version).split(".").map(Number);
      const b = String(wanted).split(".").map(Number);
      for (let i = 0; i < Math.max(a.length, b.length); i += 1) {
        if ((a[i] || 0) !== (b[i] || 0)) return (a[i] || 0) > (b[i] || 0);
      }
      return true;
    },
    ready: call("ready"),
    expand() { this.isExpanded = true; note("expand"); },
    close: call("close"),
    sendData(data) { record.sent.push(String(data)); note("sendData", [data]); },
    onEvent(event, handler) { (record.handlers[event] = record.handlers[event] || []).push(handler); },
    offEvent(event, handler) {
      record.handlers[event] = (record.handlers[event] || []).filter((h) => h !== handler);
    },
    setHeaderColor(color) { this.headerColor = color; note("setHeaderColor", [color]); },
    setBackgroundColor(color) { this.backgroundColor = color; note("setBackgroundColor", [color]); },
    setBottomBarColor(color) { this.bottomBarColor = color; note("setBottomBarColor", [color]); },
    enableClosingConfirmation() { this.isClosingConfirmationEnabled = true; note("enableClosingConfirmation"); },
    disableClosingConfirmation() { this.isClosingConfirmationEnabled = false; note("disableClosingConfirmation"); },
    disableVerticalSwipes() { this.isVerticalSwipesEnabled = false; note("disableVerticalSwipes"); },
    showConfirm(message, callback) {
      note("showConfirm", [message]);
      record.confirms.push(String(message));
      const answer = record.confirmAnswer;
      setTimeout(() => { if (callback) callback(!!answer); }, 0);
    },
    showAlert(message, callback) {
      note("showAlert", [message]);
      record.alerts.push(String(message));
      setTimeout(() => { if (callback) callback(); }, 0);
    },
    MainButton: button("MainButton", "mainButtonClicked"),
    BackButton: button("BackButton", "backButtonClicked"),
    HapticFeedback: {
      impactOccurred: call("impactOccurred"),
      notificationOccurred: call("notificationOccurred"),
      selectionChanged: call("selectionChanged"),
    },
  };

  // Telegram's side of the conversation, for tests. A button that is hidden or inactive does not click.
  record.clickMainButton = function () {
    const main = webApp.MainButton;
    if (!main.isVisible || !main.isActive) return false;
    fire("mainButtonClicked");
    return true;
  };
  record.clickBackButton = function () {
    if (!webApp.BackButton.isVisible) return false;
    fire("backButtonClicked");
    return true;
  };
  record.answerConfirm = function (answer) { record.confirmAnswer = !!answer; };
  record.changeTheme = function (params, scheme) {
    Object.keys(themeParams).forEach((key) => delete themeParams[key]);
    Object.assign(themeParams, params);
    webApp.colorScheme = scheme || webApp.colorScheme;
    setThemeVariables();
    fire("themeChanged");
  };
  record.count = function (name) { return record.calls.filter((c) => c === name).length; };
  record.args = function (name) { return record.log.filter((entry) => entry.name === name).map((entry) => entry.args); };

  window.Telegram = { WebApp: webApp };
})();
