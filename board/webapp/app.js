/* The board's Mini App: browse, open, post, write, report, close and reopen ads through /api.
 * Texts: i18n.js; Telegram's buttons, theme and haptics: telegram.js; the page's parts: views.js; the API and
 * how its answers are shown: api.js. The server decides who we are (from Telegram's signed initData). */
"use strict";

(function () {
  const { i18n, telegram, views } = window.Board;
  const { call } = window.Board.api;
  const api = window.Board.api.request;
  const { $ } = views;
  const tr = (key, values) => i18n.tr(key, values);
  const haptic = telegram.haptic;

  const DEFAULT_LIMITS = { title_max: 100, text_max: 2000, message_max: 3500, reason_max: 500 };
  // Counted inputs: input id -> [counter id, limit name, multiline].
  const COUNTED = { "post-title": ["post-title-count", "title_max", false],
    "post-text": ["post-text-count", "text_max", true], "write-text": ["write-count", "message_max", true],
    "report-reason": ["report-count", "reason_max", false] };
  const WRITE_REFUSALS = new Set(["already_invited", "invite_limit", "ad_closed"]);

  const state = {
    view: "browse", page: 0, pages: 1, q: "", category: "", limits: DEFAULT_LIMITS, categories: [],
    ad: null, back: null, locked: false, busy: "", writeLocked: false, listsLoaded: {}, tickets: {},
  };

  /** Invalid or stale initData: say so and disable everything; nothing on the page can work. */
  function lockOut(message) {
    state.locked = true;
    views.lockPage(message || tr("unauthorized"));
    telegram.hideMain();
    telegram.showBack(false);
    telegram.guardClosing(false);
  }

  // ---- screens ---------------------------------------------------------------------------------------------

  function show(view) {
    state.view = view;
    document.querySelectorAll(".view").forEach((section) => { section.hidden = section.id !== "view-" + view; });
    $("bar").hidden = view === "ad";
    if (view !== "ad") {
      document.querySelectorAll(".tab").forEach((tab) => {
        const active = tab.dataset.view === view;
        tab.classList.toggle("active", active);
        tab.setAttribute("aria-selected", active ? "true" : "false");
        tab.tabIndex = active ? 0 : -1;
      });
    }
    telegram.showBack(view === "ad" && !state.locked);
    updateMain();
    window.scrollTo(0, 0);
  }

  function canWrite(ad) { return !!ad && !ad.mine && !ad.invited && ad.status === "open"; }

  /** MainButton (or the in-page button outside Telegram) carries the screen's primary action. */
  function updateMain() {
    if (state.locked) return telegram.hideMain();
    if (state.view === "post") {
      const over = ["post-title", "post-text"].some((id) => $(id).dataset.over === "true");
      return telegram.setMain({ text: tr("post.send"), action: submitPost, enabled: !over,
        busy: state.busy === "post", fallback: $("post-send") });
    }
    if (state.view === "ad" && canWrite(state.ad) && !state.writeLocked) {
      return telegram.setMain({ text: tr("write.send"), action: sendInvite,
        enabled: $("write-text").dataset.over !== "true", busy: state.busy === "write", fallback: $("write-send") });
    }
    return telegram.hideMain();
  }

  function goTo(view) {
    if (state.locked) return;
    if (view !== state.view) haptic.selection();
    views.showAlert("");
    views.showNotice("");
    views.clearFieldErrors();
    show(view);
    if (view === "browse") loadAds({ quiet: state.listsLoaded.browse });
    if (view === "mine") loadMine({ quiet: state.listsLoaded.mine });
    if (view === "post") updateCounters();
  }

  function categoryName(id) {
    const found = state.categories.find((c) => c.id === id);
    return found ? found.name : id;
  }

  function cardOptions(listId, own) {
    return { listId, own, categoryName, onOpen: (ad) => openAd(ad.id), onClose: closeAd, onReopen: reopenAd };
  }

  // ---- lists -----------------------------------------------------------------------------------------------

  function ticket(name) { state.tickets[name] = (state.tickets[name] || 0) + 1; return state.tickets[name]; }

  async function loadAds(options) {
    const opts = options || {};
    const list = $("ads-list");
    const mine = ticket("ads");
    if (opts.quiet && list.children.length) views.setBusy(list, true); else views.showSkeleton(list);
    ["ads-empty", "ads-nothing"].forEach((id) => { $(id).hidden = true; });
    if (!opts.quiet) $("pager").hidden = true;
    const params = new URLSearchParams({ page: String(state.page) });
    if (state.q) params.set("q", state.q);
    if (state.category) params.set("category", state.category);
    const result = await call(() => api("GET", "/api/ads?" + params.toString()), { retry: () => loadAds(opts) });
    if (mine !== state.tickets.ads || state.locked) return;
    views.setBusy(list, false);
    if (result.error) { list.replaceChildren(); return; }
    const data = result.value;
    if (data.ads.length === 0 && data.total > 0 && state.page > 0 && !opts.clamped) {  // emptied meanwhile
      state.page = Math.max(0, data.pages - 1);
      return loadAds(Object.assign({}, opts, { clamped: true }));
    }
    state.listsLoaded.browse = true;
    state.page = data.page;
    state.pages = data.pages;
    list.replaceChildren(...data.ads.map((ad) => views.card(ad, cardOptions("ads", false))));
    const filtered = !!(state.q || state.category);
    $("ads-empty").hidden = data.total > 0 || filtered;
    $("ads-nothing").hidden = data.total > 0 || !filtered;
    $("pager").hidden = data.total === 0;
    $("page-info").textContent = tr("page.info", { page: i18n.number(data.page + 1),
      pages: i18n.number(data.pages), count: i18n.count("ads", data.total) });
    $("page-prev").disabled = data.page <= 0;
    $("page-next").disabled = data.page + 1 >= data.pages;
    $("page-prev").hidden = $("page-next").hidden = data.pages <= 1;  // one page: just the count
  }

  /** The pager never wraps: no page before the first or after the last. A new page starts at the top. */
  async function turnPage(step) {
    const target = state.page + step;
    if (state.locked || target < 0 || target >= state.pages) return;
    haptic.selection();
    state.page = target;
    window.scrollTo(0, 0);
    await loadAds();
    window.scrollTo(0, 0);
    const first = document.querySelector("#ads-list .card-main");
    if (first) first.focus({ preventScroll: true });
  }

  function search(event) {
    if (event) event.preventDefault();
    if (state.locked) return;
    state.q = $("search").value.trim();
    state.page = 0;
    $("search").blur();
    loadAds();
  }

  function resetFilters() {
    if (state.locked) return;
    haptic.selection();
    state.q = "";
    state.category = "";
    state.page = 0;
    $("search").value = "";
    $("category-filter").value = "";
    loadAds().then(() => $("search").focus());
  }

  async function loadMine(options) {
    const opts = options || {};
    const list = $("my-ads-list");
    const mine = ticket("mine");
    if (opts.quiet && list.children.length) views.setBusy(list, true); else views.showSkeleton(list, 2);
    $("my-ads-empty").hidden = true;
    const result = await call(() => api("GET", "/api/me/ads"), { retry: () => loadMine(opts) });
    if (mine !== state.tickets.mine || state.locked) return;
    views.setBusy(list, false);
    if (result.error) { list.replaceChildren(); return; }
    const ads = result.value.ads;
    state.listsLoaded.mine = true;
    list.replaceChildren(...ads.map((ad) => views.card(ad, cardOptions("mine", true))));
    $("my-ads-empty").hidden = ads.length > 0;
    $("mine-count").hidden = ads.length === 0;
    $("mine-count").textContent = tr("mine.count", { count: i18n.count("ads", ads.length) });
    scheduleReopenExpiry(ads);
  }

  // A Reopen button goes when the server's window for it closes (the server judges again anyway).
  let reopenTimer = null;
  function scheduleReopenExpiry(ads) {
    clearTimeout(reopenTimer);
    const ends = ads.filter(views.reopenable).map((ad) => new Date(ad.reopen_until).getTime());
    if (!ends.length) return;
    reopenTimer = setTimeout(() => {
      if (state.view === "ad" && state.ad) renderAd(state.ad);
      if (state.listsLoaded.mine) loadMine({ quiet: true });
    }, Math.max(0, Math.min(...ends) - Date.now()) + 500);
  }

  // ---- one ad ----------------------------------------------------------------------------------------------

  function renderAd(ad) {
    state.ad = ad;
    state.writeLocked = false;
    $("ad-title").textContent = ad.title;
    $("ad-text").textContent = ad.text;
    $("ad-category").textContent = categoryName(ad.category);
    $("ad-date").textContent = [i18n.date(ad.created_at),
      ad.status === "open" ? tr("ad.until", { date: i18n.date(ad.expires_at) }) : ""].filter(Boolean).join(" · ");
    $("ad-status").replaceChildren(...(ad.status === "open" ? [] : [views.statusChip(ad)]));
    const reopenable = views.reopenable(ad);
    $("ad-own").hidden = !ad.mine;
    $("ad-close").hidden = ad.status !== "open";
    $("ad-reopen").hidden = !reopenable;
    $("ad-reopen-hint").hidden = !reopenable;
    $("ad-reopen-hint").textContent = reopenable ? tr("ad.reopen_until", { time: i18n.time(ad.reopen_until) }) : "";
    if (reopenable) scheduleReopenExpiry([ad]);

    $("write").hidden = ad.mine;
    const writable = canWrite(ad);
    $("write-form").hidden = !writable;
    $("write-text").value = "";
    $("write-text").disabled = !writable;
    updateCounters();
    const status = $("write-status");
    status.hidden = writable;
    status.className = "status-line";
    status.textContent = ad.invited ? tr("write.already") : tr("write.unavailable");

    $("report").hidden = ad.mine;
    $("report-form").hidden = true;
    $("report-open").setAttribute("aria-expanded", "false");
    $("report-open").hidden = false;
    $("report-status").hidden = true;
    $("report-reason").value = "";
    updateMain();
  }

  async function openAd(id) {
    if (state.locked) return;
    haptic.impact("light");
    const from = state.view === "ad" ? state.back : { view: state.view, scrollY: window.scrollY, id };
    views.showNotice("");
    const result = await call(() => api("GET", adPath(id)), { retry: () => openAd(id) });
    if (result.error) return;
    state.back = from;
    renderAd(result.value);
    show("ad");
    $("ad-title").focus();
  }

  /** Back to the list the ad was opened from, where it was, with focus on the ad's card. */
  async function back() {
    if (state.locked || state.view !== "ad") return;
    const from = state.back || { view: "browse", scrollY: 0 };
    views.showAlert("");
    views.showNotice("");
    views.clearFieldErrors();
    telegram.guardClosing(false);
    show(from.view);
    if (from.view === "browse") await loadAds({ quiet: true });
    if (from.view === "mine") await loadMine({ quiet: true });
    if (state.view !== from.view) return;
    window.scrollTo(0, from.scrollY || 0);
    const list = from.view === "mine" ? "my-ads-list" : "ads-list";
    const cardMain = from.id && document.querySelector("#" + list + " .ad-card[data-id='" + CSS.escape(from.id) +
      "'] .card-main");
    if (cardMain) cardMain.focus({ preventScroll: true });
  }

  async function closeAd(ad) {
    if (state.locked) return;
    let question = tr("ad.close.confirm", { title: ad.title });
    if (state.limits.reopen_minutes) {
      question += " " + tr("ad.close.reopen", { minutes: i18n.count("minutes", state.limits.reopen_minutes) });
    }
    if (!(await telegram.confirm(question))) return;
    await changeAd(ad, "DELETE", "", "ad.closed_notice");
  }

  function reopenAd(ad) { return changeAd(ad, "POST", "/reopen", "ad.reopened"); }

  /** Close or reopen `ad`, then show the result where the person is (the ad, or their list). */
  async function changeAd(ad, method, suffix, notice) {
    if (state.locked) return;
    const result = await call(() => api(method, adPath(ad.id, suffix)), { retry: () => changeAd(ad, method, suffix, notice),
      action: true });
    if (result.error) {
      if (result.error.code === "reopen_expired") await refreshAfterRefusal(ad);
      return;
    }
    haptic.notify("success");
    views.showNotice(tr(notice));
    const updated = result.value;
    if (state.view === "ad") {
      renderAd(updated);
      const next = [$("ad-reopen"), $("ad-close")].find((node) => !node.hidden);
      (next || $("ad-title")).focus();
    } else {
      await loadMine({ quiet: true });
      const item = document.querySelector("#my-ads-list .ad-card[data-id='" + CSS.escape(updated.id) + "']");
      const target = item && (item.querySelector(".card-actions button") || item.querySelector(".card-main"));
      if (target) target.focus();
    }
  }

  async function refreshAfterRefusal(ad) {
    if (state.view === "ad") {
      const fresh = await api("GET", adPath(ad.id)).catch(() => null);
      if (fresh) renderAd(fresh);
    } else {
      await loadMine({ quiet: true });
    }
  }

  function adPath(id, suffix) { return "/api/ads/" + encodeURIComponent(id) + (suffix || ""); }

  /** Writing is over: `sent` (the form goes), or `refused` (it stays, disabled, with what was typed). */
  function endWriting(kind, message) {
    state.writeLocked = true;
    $("write-form").hidden = kind === "success";
    $("write-text").disabled = true;
    $("write-send").disabled = true;
    const status = $("write-status");
    status.className = "status-line " + kind;
    status.textContent = message;
    status.hidden = false;
    telegram.guardClosing(false);
    updateMain();
    status.focus();
  }

  async function sendInvite() {
    const ad = state.ad;
    if (state.locked || state.busy || !canWrite(ad) || state.writeLocked || overLimit(["write-text"])) return;
    state.busy = "write";
    updateMain();
    const body = { message: $("write-text").value };
    const refused = (error) => WRITE_REFUSALS.has(error.code) && (endWriting("refused", error.message), true);
    const result = await call(() => api("POST", adPath(ad.id, "/invite"), body),
      { retry: sendInvite, field: "message", action: true, handle: refused });
    state.busy = "";
    if (result.error) return updateMain();
    haptic.notify("success");
    state.ad = Object.assign({}, ad, { invited: true });
    endWriting("success", tr("write.sent"));
  }

  function toggleReport() {
    const form = $("report-form");
    form.hidden = !form.hidden;
    $("report-open").setAttribute("aria-expanded", form.hidden ? "false" : "true");
    if (!form.hidden) $("report-reason").focus();
  }

  async function sendReport() {
    const ad = state.ad;
    if (state.locked || state.busy || overLimit(["report-reason"])) return;
    state.busy = "report";
    $("report-send").disabled = true;
    const body = { reason: $("report-reason").value };
    const result = await call(() => api("POST", adPath(ad.id, "/report"), body),
      { retry: sendReport, field: "reason", action: true });
    state.busy = "";
    $("report-send").disabled = false;
    if (result.error) return;
    haptic.notify("success");
    $("report-form").hidden = true;
    $("report-open").hidden = true;
    $("report-status").textContent = tr("report.sent");
    $("report-status").hidden = false;
  }

  // ---- posting ---------------------------------------------------------------------------------------------

  async function submitPost(event) {
    if (event) event.preventDefault();
    if (state.locked || state.busy || overLimit(["post-title", "post-text"])) return;
    state.busy = "post";
    updateMain();
    const body = { title: $("post-title").value, text: $("post-text").value, category: $("post-category").value };
    const result = await call(() => api("POST", "/api/ads", body), { retry: submitPost, action: true });
    state.busy = "";
    if (result.error) return updateMain();
    haptic.notify("success");
    $("post-title").value = "";
    $("post-text").value = "";
    $("post-category").value = "";
    updateCounters();
    telegram.guardClosing(false);
    state.listsLoaded.mine = false;
    state.back = { view: "mine", scrollY: 0, id: result.value.id };
    renderAd(result.value);
    show("ad");
    views.showNotice(tr("post.done"));
    $("ad-title").focus();
  }

  function updateCounters() {
    Object.keys(COUNTED).forEach((id) => {
      const [counter, limit, multiline] = COUNTED[id];
      views.updateCounter($(id), $(counter), state.limits[limit] || DEFAULT_LIMITS[limit], multiline);
    });
    $("report-send").disabled = state.locked || $("report-reason").dataset.over === "true";
  }

  function overLimit(ids) {
    updateCounters();
    return ids.some((id) => $(id).dataset.over === "true");
  }

  function onInput(event) {
    views.clearFieldError(event.target);
    updateCounters();
    updateMain();
    const draft = ["post-title", "post-text", "write-text"].some((id) => $(id).value.trim() && !$(id).disabled);
    telegram.guardClosing(draft);
  }

  // ---- start -----------------------------------------------------------------------------------------------

  function translatePage() {
    document.documentElement.lang = i18n.lang;
    document.title = tr("app.title");
    i18n.translate(document);
  }

  function fillCategories() {
    const filter = $("category-filter");
    const choice = $("post-category");
    filter.replaceChildren(new Option(tr("category.all"), ""));
    choice.replaceChildren(new Option(tr("category.choose"), ""));
    state.categories.forEach((c) => {
      filter.append(new Option(c.name, c.id));
      choice.append(new Option(c.name, c.id));
    });
    filter.value = state.category;
  }

  function applyMe(me) {
    if (me.lang && me.lang !== i18n.lang) {
      i18n.setLang(me.lang);
      translatePage();
    }
    state.limits = Object.assign({}, DEFAULT_LIMITS, me.limits || {});
    const limits = state.limits;
    $("limits").textContent = tr("post.limits", {
      title: i18n.count("chars", limits.title_max), text: i18n.count("chars", limits.text_max),
      ads: i18n.number(limits.ads_per_user), days: i18n.count("days", limits.ad_days),
      invites: i18n.number(limits.invites_per_day) });
    if (me.banned) views.showNotice(tr("banned"));
    updateCounters();
  }

  function wire() {
    views.wireTabs(document.querySelectorAll(".tab"), (tab) => goTo(tab.dataset.view));
    $("search-form").addEventListener("submit", search);
    $("search").addEventListener("input", (event) => views.clearFieldError(event.target));
    $("category-filter").addEventListener("change", () => {
      haptic.selection();
      state.category = $("category-filter").value;
      state.page = 0;
      loadAds();
    });
    $("post-category").addEventListener("change", (event) => { haptic.selection(); views.clearFieldError(event.target); });
    $("ads-reset").addEventListener("click", resetFilters);
    $("page-prev").addEventListener("click", () => turnPage(-1));
    $("page-next").addEventListener("click", () => turnPage(1));
    $("error-retry").addEventListener("click", views.retry);
    $("ad-back").addEventListener("click", back);
    $("ad-close").addEventListener("click", () => closeAd(state.ad));
    $("ad-reopen").addEventListener("click", () => reopenAd(state.ad));
    $("write-send").addEventListener("click", sendInvite);
    $("report-open").addEventListener("click", toggleReport);
    $("report-send").addEventListener("click", sendReport);
    $("post-form").addEventListener("submit", submitPost);
    Object.keys(COUNTED).forEach((id) => $(id).addEventListener("input", onInput));
  }

  async function boot() {
    views.showSkeleton($("ads-list"));
    const result = await call(() => Promise.all([api("GET", "/api/me"), api("GET", "/api/categories")]),
      { retry: boot });
    if (result.error) {
      if (!state.locked) { $("ads-list").replaceChildren(); views.setBusy($("ads-list"), false); }
      return;
    }
    const [me, categories] = result.value;
    applyMe(me);
    state.categories = categories.categories;
    fillCategories();
    await loadAds();
  }

  async function start() {
    document.body.classList.toggle("tg-native", telegram.native);
    window.Board.api.onUnauthorized(lockOut);
    telegram.start(back);
    telegram.applyTheme();
    translatePage();
    wire();
    fillCategories();
    show("browse");
    await boot();
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
