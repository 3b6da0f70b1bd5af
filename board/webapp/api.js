/* The board's API as the page uses it: every call carries Telegram's signed initData ("Authorization: tma ...");
 * refusals come back as {"error": code, "message": text, "field"?: name}. `call` runs one request as the page
 * shows it: a refusal next to the field at fault (or in the top alert), a network failure or a 5xx with Retry,
 * 401 handed to `onUnauthorized`. Exposes window.Board.api. */
"use strict";

(function () {
  const { i18n, telegram, views } = window.Board;
  const { $ } = views;
  const tr = (key, values) => i18n.tr(key, values);

  // The field a refusal is about: the server's `field`, else what its code names. Field -> input id.
  const FIELDS = { title: "post-title", text: "post-text", category: "post-category", message: "write-text",
    reason: "report-reason", q: "search" };
  const FIELD_OF_CODE = [[/^title_/, "title"], [/^text_/, "text"], [/^bad_category$/, "category"],
    [/^message_/, "message"], [/^reason_/, "reason"], [/^query_/, "q"]];

  let unauthorized = () => {};

  class ApiError extends Error {
    constructor(code, message, status, field) {
      super(message);
      this.code = code;
      this.status = status;
      this.field = field || null;
    }
  }

  async function request(method, path, body) {
    const tg = telegram.tg;
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
      const fallback = response.status >= 500 ? tr("server") : tr("network");
      const message = data && typeof data.message === "string" ? data.message : fallback;
      throw new ApiError(data && data.error ? data.error : "http_" + response.status, message, response.status,
        data && data.field);
    }
    return data;
  }

  function fieldInput(error, fallbackField) {
    let field = error.field;
    if (!field) {
      const found = FIELD_OF_CODE.find(([pattern]) => pattern.test(error.code));
      field = found ? found[1] : error.status === 400 ? fallbackField : null;
    }
    const input = field && FIELDS[field] ? $(FIELDS[field]) : null;
    return input && input.offsetParent !== null ? input : null;
  }

  /** Run one request: the earlier alert goes (and field errors too, when it is the person's `action`); a refusal
   * lands next to its field or in the alert, a network failure offers Retry (`options.retry`), 401 locks the
   * page. Resolves to {value} or {error}. */
  async function call(request, options) {
    const opts = options || {};
    views.showAlert("");
    if (opts.action) views.clearFieldErrors();
    try {
      return { value: await request() };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (opts.action) telegram.haptic.notify("error");
      if (error.status === 401) {
        unauthorized(error.message);
      } else if (!(opts.handle && opts.handle(error))) {
        const input = fieldInput(error, opts.field);
        if (input) {
          views.setFieldError(input, error.message);
          input.focus();
        } else {
          const retryable = error.status === 0 || error.status >= 500;
          views.showAlert(error.message, retryable && opts.retry ? opts.retry : null);
        }
      }
      return { error };
    }
  }

  window.Board.api = {
    ApiError,
    request,
    call,
    onUnauthorized(handler) { unauthorized = handler; },
  };
})();
