/* The Mini App's side of Telegram: theme colours, the MainButton and BackButton, haptics, confirmations.
 * Inside Telegram the screen's primary action lives on MainButton and "back" on BackButton; outside it (a plain
 * browser, where telegram-web-app.js reports the platform "unknown", or a client too old for the buttons) the
 * page's own buttons stay visible instead. Exposes window.Board.telegram. */
"use strict";

(function () {
  const tg = (window.Telegram && window.Telegram.WebApp) || null;
  const HEX = /^#[0-9a-fA-F]{3,8}$/;

  function supports(version) {
    return !!tg && (typeof tg.isVersionAtLeast !== "function" || tg.isVersionAtLeast(version));
  }

  function attempt(action) {
    try { action(); } catch (e) { /* an older client without the method: the page works without it */ }
  }

  const native = !!(tg && tg.MainButton && tg.BackButton && tg.platform && tg.platform !== "unknown" &&
    supports("6.1"));

  // What MainButton shows now; `fallback` is the in-page button doing the same outside Telegram.
  const main = { visible: false, text: "", enabled: true, busy: false, action: null, fallback: null };

  function paintMain() {
    if (main.fallback) main.fallback.disabled = !main.enabled || main.busy;
    if (!native) return;
    const button = tg.MainButton;
    if (!main.visible) { button.hideProgress(); button.hide(); return; }
    const theme = tg.themeParams || {};
    const active = main.enabled;
    const params = { text: main.text };
    const color = active ? theme.button_color : theme.hint_color; // inactive: greyed out, as Telegram's own
    const textColor = active ? theme.button_text_color : theme.bg_color;
    if (HEX.test(color || "") && HEX.test(textColor || "")) Object.assign(params, { color, text_color: textColor });
    button.setParams(params);
    if (main.enabled) button.enable(); else button.disable();
    if (main.busy) button.showProgress(false); else button.hideProgress();
    button.show();
  }

  const telegram = {
    tg,
    native,

    /** Tell Telegram the page is ready, follow its theme, and route its buttons to `onBack` and the screen. */
    start(onBack) {
      if (!tg) return;
      attempt(() => tg.ready());
      attempt(() => tg.expand());
      if (supports("7.7") && tg.disableVerticalSwipes) attempt(() => tg.disableVerticalSwipes());
      if (tg.onEvent) tg.onEvent("themeChanged", () => telegram.applyTheme());
      if (native) {
        tg.MainButton.onClick(() => { if (main.visible && main.enabled && !main.busy && main.action) main.action(); });
        tg.BackButton.onClick(() => onBack());
      }
    },

    /** CSS variables from themeParams, and Telegram's header and background painted as the page's own. */
    applyTheme() {
      const params = (tg && tg.themeParams) || {};
      const root = document.documentElement;
      Object.keys(params).forEach((key) => {
        if (typeof params[key] === "string" && HEX.test(params[key])) {
          root.style.setProperty("--tg-theme-" + key.replace(/_/g, "-"), params[key]);
        }
      });
      root.dataset.scheme = tg && tg.colorScheme === "dark" ? "dark" : "light";
      if (!tg || !supports("6.1")) return;
      const page = HEX.test(params.secondary_bg_color || "") ? params.secondary_bg_color : "secondary_bg_color";
      if (tg.setHeaderColor) attempt(() => tg.setHeaderColor("secondary_bg_color"));
      if (tg.setBackgroundColor) attempt(() => tg.setBackgroundColor(page));
      if (supports("7.10") && tg.setBottomBarColor) attempt(() => tg.setBottomBarColor(page));
      paintMain();
    },

    /** Show the screen's primary action: {text, action, enabled, busy, fallback}. */
    setMain(options) {
      Object.assign(main, { enabled: true, busy: false, fallback: null }, options, { visible: true });
      paintMain();
    },

    hideMain() {
      Object.assign(main, { visible: false, action: null, fallback: null, busy: false });
      paintMain();
    },

    showBack(visible) {
      if (native) attempt(() => (visible ? tg.BackButton.show() : tg.BackButton.hide()));
    },

    /** Ask before something hard to undo: Telegram's own popup, else the browser's. Resolves to true or false. */
    confirm(message) {
      if (native && supports("6.2") && tg.showConfirm) {
        return new Promise((resolve) => tg.showConfirm(message, (ok) => resolve(!!ok)));
      }
      return Promise.resolve(window.confirm(message));
    },

    /** While a draft would be lost, Telegram asks before the Mini App is closed. */
    guardClosing(on) {
      if (!native || !supports("6.2")) return;
      attempt(() => (on ? tg.enableClosingConfirmation() : tg.disableClosingConfirmation()));
    },

    haptic: {
      selection() { haptic((h) => h.selectionChanged()); },
      impact(style) { haptic((h) => h.impactOccurred(style || "light")); },
      notify(type) { haptic((h) => h.notificationOccurred(type)); },
    },
  };

  function haptic(action) {
    if (tg && tg.HapticFeedback && supports("6.1")) attempt(() => action(tg.HapticFeedback));
  }

  window.Board = window.Board || {};
  window.Board.telegram = telegram;
})();
