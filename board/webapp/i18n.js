/* The board's Mini App texts in Russian (the default) and English, and how counts are said in each:
 * CLDR plural categories from Intl.PluralRules ("1 объявление", "3 объявления", "5 объявлений").
 * Exposes window.Board.i18n; error texts come from the server, in the caller's language. */
"use strict";

(function () {
  const TEXTS = {
    ru: {
      "app.title": "Доска",
      "tabs.label": "Разделы доски", "tab.browse": "Объявления", "tab.mine": "Мои", "tab.post": "Разместить",
      "search.label": "Поиск по объявлениям", "search.placeholder": "Поиск", "search.go": "Найти",
      "category.label": "Категория", "category.all": "Все категории", "category.choose": "Выберите категорию",
      "list.loading": "Загрузка…", "ads.empty": "Объявлений пока нет.", "ads.nothing": "Ничего не найдено.",
      "ads.nothing_hint": "Попробуйте другие слова или другую категорию.", "ads.reset": "Сбросить фильтры",
      "pager.label": "Страницы", "page.prev": "Новее", "page.next": "Старше",
      "page.prev.label": "Предыдущая страница", "page.next.label": "Следующая страница",
      "page.info": "Стр. {page} из {pages} · {count}",
      "ad.back": "Назад", "ad.own": "Это ваше объявление.", "ad.close": "Закрыть объявление",
      "ad.close_short": "Закрыть", "ad.reopen": "Открыть снова",
      "ad.close.confirm": "Закрыть объявление «{title}»?",
      "ad.close.reopen": "Открыть его снова можно будет, пока не пройдёт {minutes}.",
      "ad.closed_notice": "Объявление закрыто.", "ad.reopened": "Объявление снова открыто.",
      "ad.reopen_until": "Закрыли по ошибке? Его можно открыть снова до {time}.", "ad.until": "до {date}",
      "status.open": "открыто", "status.closed": "закрыто", "status.hidden": "скрыто модератором",
      "status.expired": "истекло", "status.reported": "на проверке",
      "write.title": "Написать автору",
      "write.hint": "Одно первое сообщение на объявление: автор примет его или отклонит.",
      "write.field": "Ваше сообщение автору", "write.send": "Отправить",
      "write.sent": "Сообщение отправлено. Если автор примет его, бот откроет анонимный чат.",
      "write.already": "Вы уже написали автору этого объявления.",
      "write.unavailable": "Написать нельзя: объявление не открыто.",
      "report.open": "Пожаловаться", "report.field": "Причина жалобы (необязательно)", "report.send": "Отправить жалобу",
      "report.sent": "Жалоба отправлена модераторам.",
      "post.title": "Новое объявление", "post.field.title": "Заголовок", "post.field.text": "Текст",
      "post.field.category": "Категория", "post.send": "Опубликовать", "post.done": "Объявление опубликовано.",
      "post.limits": "Заголовок — {title}, текст — {text}. Открытых объявлений — {ads}, каждое живёт {days}. " +
        "Первых сообщений в день — {invites}. Ссылки и @упоминания запрещены.",
      "mine.empty": "У вас пока нет объявлений.", "mine.count": "Всего: {count}",
      "network": "Нет связи с сервером.", "server": "Сервер не ответил.", "retry": "Повторить",
      "unauthorized": "Откройте доску из Telegram: данные входа не подтверждены.",
      "counter": "{n} / {max}", "counter.over": "{n} / {max} · лишних: {count}",
      "banned": "Модератор заблокировал вас: размещать объявления и писать авторам нельзя.",
    },
    en: {
      "app.title": "Board",
      "tabs.label": "Board sections", "tab.browse": "Ads", "tab.mine": "My ads", "tab.post": "Post",
      "search.label": "Search the ads", "search.placeholder": "Search", "search.go": "Find",
      "category.label": "Category", "category.all": "All categories", "category.choose": "Choose a category",
      "list.loading": "Loading…", "ads.empty": "No ads yet.", "ads.nothing": "Nothing found.",
      "ads.nothing_hint": "Try other words or another category.", "ads.reset": "Reset the filters",
      "pager.label": "Pages", "page.prev": "Newer", "page.next": "Older",
      "page.prev.label": "Previous page", "page.next.label": "Next page",
      "page.info": "Page {page} of {pages} · {count}",
      "ad.back": "Back", "ad.own": "This is your ad.", "ad.close": "Close the ad",
      "ad.close_short": "Close", "ad.reopen": "Reopen",
      "ad.close.confirm": "Close the ad “{title}”?",
      "ad.close.reopen": "You can reopen it within {minutes}.",
      "ad.closed_notice": "The ad is closed.", "ad.reopened": "The ad is open again.",
      "ad.reopen_until": "Closed by mistake? You can reopen it until {time}.", "ad.until": "until {date}",
      "status.open": "open", "status.closed": "closed", "status.hidden": "hidden by a moderator",
      "status.expired": "expired", "status.reported": "under review",
      "write.title": "Write to the author",
      "write.hint": "One first message per ad: the author accepts or declines it.",
      "write.field": "Your message to the author", "write.send": "Send",
      "write.sent": "Message sent. If the author accepts it, the bot opens an anonymous chat.",
      "write.already": "You have already written to this ad's author.",
      "write.unavailable": "You cannot write: the ad is not open.",
      "report.open": "Report", "report.field": "Why are you reporting it? (optional)", "report.send": "Send report",
      "report.sent": "Report sent to the moderators.",
      "post.title": "New ad", "post.field.title": "Title", "post.field.text": "Text",
      "post.field.category": "Category", "post.send": "Publish", "post.done": "Your ad is published.",
      "post.limits": "Title: {title}; text: {text}. Open ads at a time: {ads}; each stays {days}. " +
        "First messages a day: {invites}. No links or @mentions.",
      "mine.empty": "You have no ads yet.", "mine.count": "In all: {count}",
      "network": "Cannot reach the server.", "server": "The server did not answer.", "retry": "Retry",
      "unauthorized": "Open the board from Telegram: the sign-in data is not confirmed.",
      "counter": "{n} / {max}", "counter.over": "{n} / {max} · {count} too many",
      "banned": "A moderator has banned you: you cannot post ads or write to authors.",
    },
  };

  // Nominative forms by CLDR category ("one", "few", "many", "other"): "{n} <form>".
  const UNITS = {
    ru: {
      ads: { one: "объявление", few: "объявления", many: "объявлений", other: "объявления" },
      chars: { one: "символ", few: "символа", many: "символов", other: "символа" },
      days: { one: "день", few: "дня", many: "дней", other: "дня" },
      minutes: { one: "минута", few: "минуты", many: "минут", other: "минуты" },
    },
    en: {
      ads: { one: "ad", other: "ads" },
      chars: { one: "character", other: "characters" },
      days: { one: "day", other: "days" },
      minutes: { one: "minute", other: "minutes" },
    },
  };

  const tg = (window.Telegram && window.Telegram.WebApp) || null;
  const user = tg && tg.initDataUnsafe && tg.initDataUnsafe.user;
  const claimed = user && typeof user.language_code === "string" ? user.language_code : "";

  function pick(code) { return String(code || "").toLowerCase().startsWith("en") ? "en" : "ru"; }

  const i18n = {
    lang: pick(claimed),
    setLang(code) { this.lang = pick(code); },
    locale() { return this.lang === "en" ? "en-GB" : "ru-RU"; },

    tr(key, values) {
      const text = (TEXTS[this.lang] && TEXTS[this.lang][key]) || TEXTS.ru[key] || key;
      return text.replace(/\{(\w+)\}/g, (m, name) => (values && name in values ? String(values[name]) : m));
    },

    number(n) { return Number(n).toLocaleString(this.locale()); },

    /** "5 объявлений", "1 ad": the count and its unit in the form the language's plural rules ask for. */
    count(unit, n) {
      const forms = UNITS[this.lang][unit];
      const category = new Intl.PluralRules(this.locale()).select(Number(n));
      return this.number(n) + "\u00a0" + (forms[category] || forms.other);
    },

    date(iso) {
      const date = new Date(iso);
      return isNaN(date) ? "" : date.toLocaleDateString(this.locale(), { day: "numeric", month: "short" });
    },

    time(iso) {
      const date = new Date(iso);
      return isNaN(date) ? "" : date.toLocaleTimeString(this.locale(), { hour: "2-digit", minute: "2-digit" });
    },

    /** Fill every [data-i18n] text, [data-i18n-label] aria-label and [data-i18n-placeholder] in `root`. */
    translate(root) {
      root.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = this.tr(node.dataset.i18n); });
      root.querySelectorAll("[data-i18n-label]").forEach((node) => {
        node.setAttribute("aria-label", this.tr(node.dataset.i18nLabel));
      });
      root.querySelectorAll("[data-i18n-placeholder]").forEach((node) => {
        node.placeholder = this.tr(node.dataset.i18nPlaceholder);
      });
    },
  };

  window.Board = window.Board || {};
  window.Board.i18n = i18n;
})();
