/* The page's parts, built and updated with plain DOM: cards, skeletons, the alert with its Retry, field errors
 * and live length counters. User content is only ever set as text. Exposes window.Board.views. */
"use strict";

(function () {
  const { i18n } = window.Board;
  const tr = (key, values) => i18n.tr(key, values);

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(className, text, onClick) {
    const node = el("button", className, text);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  // ---- lists -----------------------------------------------------------------------------------------------

  /** Placeholder cards while a list loads; the list says it is busy. */
  function showSkeleton(list, count) {
    list.setAttribute("aria-busy", "true");
    const cards = [];
    for (let i = 0; i < (count || 3); i += 1) {
      const item = el("li", "card skeleton");
      item.setAttribute("aria-hidden", "true");
      item.append(el("span", "sk-line sk-chip"), el("span", "sk-line sk-title"), el("span", "sk-line"),
        el("span", "sk-line sk-short"));
      cards.push(item);
    }
    list.replaceChildren(...cards);
  }

  function setBusy(list, busy) { list.setAttribute("aria-busy", busy ? "true" : "false"); }

  /** One's own closed ad that the server still lets one reopen (judged again by the server on reopening). */
  function reopenable(ad) {
    return !!(ad && ad.mine && ad.status === "closed" && ad.reopen_until && new Date(ad.reopen_until) > new Date());
  }

  function statusChip(ad) {
    return el("span", "status status-" + ad.status, tr("status." + ad.status));
  }

  /** An ad in a list: an <li> whose main part is a button (Tab, Enter, Space); one's own get Close/Reopen. */
  function card(ad, options) {
    const item = el("li", "card ad-card");
    item.dataset.id = ad.id;
    const key = options.listId + "-" + ad.id;
    const main = el("div", "card-main");
    main.setAttribute("role", "button");
    main.tabIndex = 0;
    const meta = el("div", "meta");
    meta.id = key + "-meta";
    meta.append(el("span", "chip", options.categoryName(ad.category)), el("span", "hint", i18n.date(ad.created_at)));
    if (ad.status !== "open" || options.own) meta.append(statusChip(ad));
    const title = el("span", "card-title", ad.title);
    title.id = key + "-title";
    const snippet = el("span", "card-text", ad.text.length > 160 ? ad.text.slice(0, 160) + "…" : ad.text);
    snippet.id = key + "-text";
    main.setAttribute("aria-labelledby", title.id);
    main.setAttribute("aria-describedby", meta.id + " " + snippet.id);
    main.append(meta, title, snippet);
    main.addEventListener("click", () => options.onOpen(ad));
    main.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        options.onOpen(ad);
      }
    });
    item.append(main);
    if (options.own && (ad.status === "open" || reopenable(ad))) {
      const actions = el("div", "card-actions");
      const action = ad.status === "open"
        ? button("button danger small close-ad", tr("ad.close_short"), () => options.onClose(ad))
        : button("button small reopen-ad", tr("ad.reopen"), () => options.onReopen(ad));
      action.setAttribute("aria-describedby", title.id);
      actions.append(action);
      item.append(actions);
    }
    return item;
  }

  /** Tabs as ARIA asks: click or arrows/Home/End select one (the selected tab is the only tab stop). */
  function wireTabs(tabs, select) {
    const all = Array.from(tabs);
    all.forEach((tab, index) => {
      tab.addEventListener("click", () => select(tab));
      tab.addEventListener("keydown", (event) => {
        const moves = { ArrowLeft: index - 1, ArrowRight: index + 1, Home: 0, End: all.length - 1 };
        if (!(event.key in moves)) return;
        event.preventDefault();
        const next = all[(moves[event.key] + all.length) % all.length];
        next.focus();
        select(next);
      });
    });
  }

  // ---- messages --------------------------------------------------------------------------------------------

  let retryAction = null;

  /** The top alert: a message, with a Retry button when `retry` is given. Empty message hides it. */
  function showAlert(message, retry) {
    retryAction = retry || null;
    $("error-text").textContent = message || "";
    $("error-retry").hidden = !retry;
    $("error").hidden = !message;
    if (message) $("error").scrollIntoView({ block: "nearest" });
  }

  function retry() {
    const action = retryAction;
    showAlert("");
    if (action) action();
  }

  function showNotice(message) {
    $("notice").textContent = message || "";
    $("notice").hidden = !message;
  }

  /** Nothing on the page can work (the caller is not proven): say why, and disable every control. */
  function lockPage(message) {
    document.body.dataset.locked = "true";
    showAlert(message);
    document.querySelectorAll("button, input, select, textarea").forEach((node) => { node.disabled = true; });
    document.querySelectorAll("[role='button']").forEach((node) => {
      node.setAttribute("aria-disabled", "true");
      node.tabIndex = -1;
    });
    document.querySelectorAll(".cards").forEach((list) => { list.replaceChildren(); setBusy(list, false); });
    document.querySelectorAll(".empty, .pager").forEach((node) => { node.hidden = true; });
  }

  // ---- fields ----------------------------------------------------------------------------------------------

  function markInvalid(input) {
    const invalid = input.dataset.over === "true" || input.dataset.error === "true";
    if (invalid) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  }

  /** The server's refusal shown under the field at fault (announced with the field, aria-describedby). */
  function setFieldError(input, message) {
    const box = $(input.id + "-error");
    box.textContent = message;
    box.hidden = false;
    input.dataset.error = "true";
    markInvalid(input);
  }

  function clearFieldError(input) {
    const box = $(input.id + "-error");
    if (box) { box.textContent = ""; box.hidden = true; }
    delete input.dataset.error;
    markInvalid(input);
  }

  function clearFieldErrors() {
    document.querySelectorAll("[data-error='true']").forEach(clearFieldError);
  }

  const DROPPED = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}]/u;
  const EMOJI_SIDE = /[\p{So}\p{Sk}\uFE0F\u{1F3FB}-\u{1F3FF}]/u;

  /** The text as the server stores it (board/text.py `clean`): NFC, no control or format characters (but a
   * joiner inside an emoji), tabs as spaces, space runs as one, lines and ends trimmed, at most one blank line. */
  function cleaned(value, multiline) {
    const chars = Array.from(value.normalize("NFC").replace(/\r\n?|\u2028|\x85/g, "\n").replace(/\u2029/g, "\n\n")
      .replace(/\t/g, " "));
    let text = chars.filter((ch, i) => ch === "\n" || (ch === "\u200d"
      ? i > 0 && i < chars.length - 1 && EMOJI_SIDE.test(chars[i - 1]) && EMOJI_SIDE.test(chars[i + 1])
      : !DROPPED.test(ch))).join("");
    if (!multiline) text = text.replace(/\n/g, " ");
    const lines = text.split("\n").map((line) => line.replace(/[^\S\n]+/g, " ").trim());
    return lines.join("\n").replace(/\n{3,}/g, "\n\n").trim();
  }

  /** "n / max" under a field, counted as the server counts (characters of the text it would store); over the
   * limit it says by how much and the field is invalid. Nothing is ever cut. Returns true when over. */
  function updateCounter(input, counter, max, multiline) {
    const n = Array.from(cleaned(input.value, multiline !== false)).length;
    const over = n > max;
    const values = { n: i18n.number(n), max: i18n.number(max), count: i18n.count("chars", n - max) };
    counter.textContent = tr(over ? "counter.over" : "counter", values);
    counter.classList.toggle("over", over);
    input.dataset.over = over ? "true" : "false";
    markInvalid(input);
    return over;
  }

  window.Board.views = {
    $, el, button, wireTabs, showSkeleton, setBusy, reopenable, statusChip, card,
    showAlert, retry, showNotice, lockPage, setFieldError, clearFieldError, clearFieldErrors, updateCounter,
  };
})();
