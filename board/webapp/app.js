/* The board's Mini App: browse, open, post, write, report and close ads through /api.
 * Every call carries Telegram's signed initData ("Authorization: tma ..."); the server decides who we are.
 * Plain DOM, no build step; user content is only ever set as text, never as HTML. */
"use strict";

(function () {
  const tg = (window.Telegram && window.Telegram.WebApp) || null;

  const TEXTS = {
    ru: {
      "tab.browse": "Объявления", "tab.mine": "Мои", "tab.post": "Разместить",
      "search.placeholder": "Поиск", "search.go": "Найти", "category.all": "Все категории",
      "ads.empty": "Объявлений пока нет.", "page.prev": "← Новее", "page.next": "Старше →",
      "page.info": "Стр. {page} из {pages} · всего {total}",
      "ad.back": "← Назад", "ad.own": "Это ваше объявление.", "ad.close": "Закрыть объявление",
      "ad.closed_notice": "Объявление закрыто.",
      "status.open": "открыто", "status.closed": "закрыто", "status.hidden": "скрыто", "status.expired": "истекло",
      "write.title": "Написать автору",
      "write.hint": "Одно первое сообщение на объявление: автор примет его или отклонит.",
      "write.send": "Отправить", "write.sent": "Сообщение отправлено. Если автор примет его, бот откроет анонимный чат.",
      "write.already": "Вы уже написали автору этого объявления.",
      "write.unavailable": "Написать нельзя: объявление не открыто.",
      "report.open": "Пожаловаться", "report.placeholder": "Причина (необязательно)", "report.send": "Отправить жалобу",
      "report.sent": "Жалоба отправлена модераторам.",
      "post.title": "Новое объявление", "post.field.title": "Заголовок", "post.field.text": "Текст",
      "post.field.category": "Категория", "post.send": "Опубликовать", "post.done": "Объявление опубликовано.",
      "post.limits": "Заголовок до {title_max} символов, текст до {text_max}. Не больше {ads_per_user} открытых " +
        "объявлений; каждое живёт {ad_days} дн. Первых сообщений в день: до {invites_per_day}. " +
        "Ссылки и @упоминания запрещены.",
      "mine.empty": "У вас пока нет объявлений.", "network": "Нет связи с сервером. Попробуйте ещё раз.",
      "counter": "{n} / {max}",
    },
    en: {
      "tab.browse": "Ads", "tab.mine": "My ads", "tab.post": "Post",
      "search.placeholder": "Search", "search.go": "Find", "category.all": "All categories",
      "ads.empty": "No ads yet.", "page.prev": "← Newer", "page.next": "Older →",
      "page.info": "Page {page} of {pages} · {total} in all",
      "ad.back": "← Back", "ad.own": "This is your ad.", "ad.close": "Close the ad",
      "ad.closed_notice": "The ad is closed.",
      "status.open": "open", "status.closed": "closed", "status.hidden": "hidden", "status.expired": "expired",
      "write.title": "Write to the author",
      "write.hint": "One first message per ad: the author accepts or declines it.",
      "write.send": "Send", "write.sent": "Message sent. If the author accepts it, the bot opens an anonymous chat.",
      "write.already": "You have already written to this ad's author.",
      "write.unavailable": "You cannot write: the ad is not open.",
      "report.open": "Report", "report.placeholder": "Reason (optional)", "report.send": "Send report",
      "report.sent": "Report sent to the moderators.",
      "post.title": "New ad", "post.field.title": "Title", "post.field.text": "Text",
      "post.field.category": "Category", "post.send": "Publish", "post.done": "Your ad is published.",
      "post.limits": "Title up to {title_max} characters, text up to {text_max}. At most {ads_per_user} open " +
        "ads; each stays {ad_days} days. First messages a day: up to {invites_per_day}. " +
        "No links or @mentions.",
      "mine.empty": "You have no ads yet.", "network": "Cannot reach the server. Try again.",
      "counter": "{n} / {max}",
    },
  };

  const user = tg && tg.initDataUnsafe && tg.initDataUnsafe.user;
  const lang = user && typeof user.language_code === "string" && user.language_code.toLowerCase().startsWith("en")
    ? "en" : "ru";
  const DEFAULT_LIMITS = { title_max: 100, text_max: 2000, message_max: 4096, reason_max: 500 };

  const state = {
    view: "browse", page: 0, pages: 1, q: "", category: "", limits: DEFAULT_LIMITS,
    categories: [], ad: null, previous: "browse",
  };

  function tr(key, values) {
    const text = (TEXTS[lang] && TEXTS[lang][key]) || TEXTS.ru[key] || key;
    return text.replace(/\{(\w+)\}/g, (m, name) => (values && name in values ? String(values[name]) : m));
  }

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- Telegram --------------------------------------------------------------------------------------------

  function applyTheme() {
    const params = (tg && tg.themeParams) || {};
    const root = document.documentElement.style;
    Object.keys(params).forEach((key) => {
      if (typeof params[key] === "string" && /^#[0-9a-fA-F]{3,8}$/.test(params[key])) {
        root.setProperty("--tg-theme-" + key.replace(/_/g, "-"), params[key]);
      }
    });
    if (tg && tg.colorScheme) document.documentElement.dataset.scheme = tg.colorScheme;
  }

  // ---- messages --------------------------------------------------------------------------------------------

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
    if (message) box.scrollIntoView({ block: "nearest" });
  }

  function showNotice(message) {
    const box = $("notice");
    box.textContent = message;
    box.hidden = !message;
  }

  // ---- the API ---------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(code, message, status) { super(message); this.code = code; this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "tma " + ((tg && tg.initData) || "") };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError("network", tr("network"), 0);
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const code = data && data.error ? data.error : "http_" + response.status;
      const message = data && data.message ? data.message : tr("network");
      throw new ApiError(code, message, response.status);
    }
    return data;
  }

  async function guarded(action) {
    try {
      showError("");
      return await action();
    } catch (e) {
      showError(e instanceof ApiError ? e.message : String(e));
      return undefined;
    }
  }

  // ---- views -----------------------------------------------------------------------------------------------

  function show(view) {
    state.view = view;
    document.querySelectorAll(".view").forEach((section) => { section.hidden = section.id !== "view-" + view; });
    document.querySelectorAll(".tab").forEach((tab) => {
      const active = tab.dataset.view === view;
      tab.classList.toggle("active", active);
      tab.setAttribute("aria-selected", active ? "true" : "false");
    });
    if (tg && tg.BackButton) {
      if (view === "ad") tg.BackButton.show(); else tg.BackButton.hide();
    }
    window.scrollTo(0, 0);
  }

  function categoryName(id) {
    const found = state.categories.find((c) => c.id === id);
    return found ? found.name : id;
  }

  function formatDate(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleDateString(lang === "en" ? "en-GB" : "ru-RU");
  }

  function adCard(ad, withClose) {
    const item = el("li", "card ad-card");
    item.dataset.id = ad.id;
    item.tabIndex = 0;
    const meta = el("div", "meta");
    meta.append(el("span", "chip", categoryName(ad.category)), " ", el("span", "hint", formatDate(ad.created_at)));
    if (ad.status !== "open" || withClose) meta.append(" ", el("span", "status status-" + ad.status, tr("status." + ad.status)));
    item.append(meta, el("h3", "card-title", ad.title));
    const snippet = ad.text.length > 160 ? ad.text.slice(0, 160) + "…" : ad.text;
    item.append(el("p", "card-text", snippet));
    if (withClose && ad.status === "open") {
      const close = el("button", "button danger small close-ad", tr("ad.close"));
      close.type = "button";
      close.addEventListener("click", (event) => { event.stopPropagation(); closeAd(ad.id); });
      item.append(close);
    }
    item.addEventListener("click", () => openAd(ad.id));
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") openAd(ad.id); });
    return item;
  }

  async function loadAds() {
    const params = new URLSearchParams({ page: String(state.page) });
    if (state.q) params.set("q", state.q);
    if (state.category) params.set("category", state.category);
    const data = await guarded(() => api("GET", "/api/ads?" + params.toString()));
    const list = $("ads-list");
    list.replaceChildren();
    if (!data) return;
    data.ads.forEach((ad) => list.append(adCard(ad, false)));
    state.pages = data.pages;
    $("ads-empty").hidden = data.ads.length > 0;
    $("page-info").textContent = tr("page.info", { page: data.page + 1, pages: data.pages, total: data.total });
    $("page-prev").disabled = data.page <= 0;
    $("page-next").disabled = data.page + 1 >= data.pages;
  }

  async function loadMine() {
    const data = await guarded(() => api("GET", "/api/me/ads"));
    const list = $("my-ads-list");
    list.replaceChildren();
    if (!data) return;
    data.ads.forEach((ad) => list.append(adCard(ad, true)));
    $("my-ads-empty").hidden = data.ads.length > 0;
  }

  function renderAd(ad) {
    state.ad = ad;
    $("ad-title").textContent = ad.title;
    $("ad-text").textContent = ad.text;
    $("ad-category").textContent = categoryName(ad.category);
    $("ad-date").textContent = formatDate(ad.created_at);
    $("ad-status").textContent = ad.status === "open" ? "" : tr("status." + ad.status);
    $("ad-own").hidden = !ad.mine;
    $("ad-close").hidden = ad.status !== "open";
    $("report").hidden = ad.mine;
    $("report-form").hidden = true;
    $("report-status").hidden = true;
    $("report-reason").value = "";
    const status = $("write-status");
    const canWrite = !ad.mine && !ad.invited && ad.status === "open";
    $("write").hidden = !canWrite;
    $("write-text").value = "";
    $("write-text").disabled = !canWrite;
    $("write-send").disabled = !canWrite;
    updateCounter("write-text", "write-count", state.limits.message_max);
    status.hidden = ad.mine || canWrite;
    status.textContent = ad.invited ? tr("write.already") : tr("write.unavailable");
  }

  async function openAd(id) {
    state.previous = state.view === "ad" ? state.previous : state.view;
    showNotice("");
    const ad = await guarded(() => api("GET", "/api/ads/" + encodeURIComponent(id)));
    if (!ad) return;
    renderAd(ad);
    show("ad");
  }

  function back() {
    showNotice("");
    goTo(state.previous || "browse");
  }

  async function closeAd(id) {
    const ad = await guarded(() => api("DELETE", "/api/ads/" + encodeURIComponent(id)));
    if (!ad) return;
    showNotice(tr("ad.closed_notice"));
    if (state.view === "ad") renderAd(ad); else loadMine();
  }

  async function sendInvite() {
    const ad = state.ad;
    const message = $("write-text").value;
    $("write-send").disabled = true;
    const result = await guarded(() => api("POST", "/api/ads/" + encodeURIComponent(ad.id) + "/invite", { message }));
    if (!result) {
      $("write-send").disabled = false;
      return;
    }
    state.ad = Object.assign({}, ad, { invited: true });
    $("write-text").disabled = true;
    $("write").hidden = true;
    const status = $("write-status");
    status.textContent = tr("write.sent");
    status.hidden = false;
    if (tg && tg.HapticFeedback && tg.HapticFeedback.notificationOccurred) tg.HapticFeedback.notificationOccurred("success");
  }

  async function sendReport() {
    const ad = state.ad;
    const reason = $("report-reason").value;
    $("report-send").disabled = true;
    const result = await guarded(() => api("POST", "/api/ads/" + encodeURIComponent(ad.id) + "/report", { reason }));
    $("report-send").disabled = false;
    if (!result) return;
    $("report").hidden = true;
    $("report-status").textContent = tr("report.sent");
    $("report-status").hidden = false;
  }

  async function postAd(event) {
    event.preventDefault();
    const body = { title: $("post-title").value, text: $("post-text").value, category: $("post-category").value };
    $("post-send").disabled = true;
    const ad = await guarded(() => api("POST", "/api/ads", body));
    $("post-send").disabled = false;
    if (!ad) return;
    $("post-title").value = "";
    $("post-text").value = "";
    updatePostCounters();
    state.previous = "mine";
    renderAd(ad);
    show("ad");
    showNotice(tr("post.done"));
  }

  function updateCounter(inputId, counterId, max) {
    $(counterId).textContent = tr("counter", { n: $(inputId).value.length, max });
  }

  function updatePostCounters() {
    updateCounter("post-title", "post-title-count", state.limits.title_max);
    updateCounter("post-text", "post-text-count", state.limits.text_max);
  }

  function goTo(view) {
    showError("");
    if (view !== "ad") showNotice("");
    show(view);
    if (view === "browse") loadAds();
    if (view === "mine") loadMine();
    if (view === "post") updatePostCounters();
  }

  // ---- start -----------------------------------------------------------------------------------------------

  function translatePage() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = tr(node.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((node) => {
      node.placeholder = tr(node.dataset.i18nPlaceholder);
    });
    document.title = lang === "en" ? "Board" : "Доска";
  }

  function fillCategories() {
    const filter = $("category-filter");
    const choice = $("post-category");
    filter.replaceChildren(new Option(tr("category.all"), ""));
    choice.replaceChildren();
    state.categories.forEach((c) => {
      filter.append(new Option(c.name, c.id));
      choice.append(new Option(c.name, c.id));
    });
  }

  function applyLimits(limits) {
    state.limits = limits;
    $("post-title").maxLength = limits.title_max;
    $("post-text").maxLength = limits.text_max;
    $("write-text").maxLength = limits.message_max;
    $("report-reason").maxLength = limits.reason_max;
    $("limits").textContent = tr("post.limits", limits);
  }

  function wire() {
    document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => goTo(tab.dataset.view)));
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.q = $("search").value.trim();
      state.page = 0;
      loadAds();
    });
    $("category-filter").addEventListener("change", () => {
      state.category = $("category-filter").value;
      state.page = 0;
      loadAds();
    });
    $("page-prev").addEventListener("click", () => { if (state.page > 0) { state.page -= 1; loadAds(); } });
    $("page-next").addEventListener("click", () => { if (state.page + 1 < state.pages) { state.page += 1; loadAds(); } });
    $("ad-back").addEventListener("click", back);
    $("ad-close").addEventListener("click", () => closeAd(state.ad.id));
    $("write-send").addEventListener("click", sendInvite);
    $("write-text").addEventListener("input", () => updateCounter("write-text", "write-count", state.limits.message_max));
    $("report-open").addEventListener("click", () => { $("report-form").hidden = !$("report-form").hidden; });
    $("report-send").addEventListener("click", sendReport);
    $("post-form").addEventListener("submit", postAd);
    $("post-title").addEventListener("input", updatePostCounters);
    $("post-text").addEventListener("input", updatePostCounters);
    if (tg && tg.BackButton && tg.BackButton.onClick) tg.BackButton.onClick(back);
  }

  async function start() {
    if (tg) {
      try { tg.ready(); tg.expand(); } catch (e) { /* outside Telegram: carry on */ }
      if (tg.onEvent) tg.onEvent("themeChanged", applyTheme);
    }
    applyTheme();
    translatePage();
    wire();
    show("browse");
    const [me, categories] = await Promise.all([
      guarded(() => api("GET", "/api/me")),
      guarded(() => api("GET", "/api/categories")),
    ]);
    if (me) applyLimits(me.limits);
    if (categories) state.categories = categories.categories;
    fillCategories();
    if (me) await loadAds();
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
