// The Mini App's only script: it fetches each page's HTML from /app/api/ with the signed
// initData Telegram gave this page, shows it, and posts the pages' forms the same way.
(() => {
  "use strict";
  const tg = window.Telegram && window.Telegram.WebApp;
  const initData = tg ? tg.initData : "";
  const main = document.getElementById("main");
  const note = document.getElementById("message");
  const api = main.dataset.api;

  function say(text, bad) {
    note.textContent = text;
    note.className = bad ? "bad" : "good";
    note.hidden = !text;
  }

  function current() {
    // Telegram opens the page with its launch data in the hash (#tgWebAppData=...):
    // only a hash that is one of our routes names a page.
    const hash = location.hash.slice(1);
    return hash.startsWith("/") ? hash : "/home";
  }

  function markNav(route) {
    for (const link of document.querySelectorAll("nav a")) {
      const here = route === link.dataset.nav || route.startsWith(link.dataset.nav + "/");
      if (here) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  async function call(method, path, body) {
    const headers = { "X-Telegram-Init-Data": initData };
    if (body) headers["Content-Type"] = "application/x-www-form-urlencoded";
    const response = await fetch(api + path, { method, headers, body });
    if (!response.ok) {
      let text = response.statusText;
      try {
        text = (await response.json()).error || text;
      } catch (_) {
        // not JSON: keep the status text
      }
      throw new Error(text);
    }
    const route = response.headers.get("X-Tickler-Route") || path;
    const message = response.headers.get("X-Tickler-Message");
    main.innerHTML = await response.text();
    if (location.hash.slice(1) !== route) history.replaceState(null, "", "#" + route);
    markNav(route);
    say(message ? decodeURIComponent(message) : "", false);
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      if (method === "POST" || document.activeElement === document.body) heading.focus();
    }
  }

  async function load() {
    try {
      await call("GET", current());
    } catch (error) {
      main.innerHTML = "";
      say(error.message, true);
    }
  }

  function confirmed(question) {
    if (!question) return Promise.resolve(true);
    if (tg && tg.showConfirm && tg.platform !== "unknown") {
      return new Promise((resolve) => tg.showConfirm(question, resolve));
    }
    return Promise.resolve(window.confirm(question));
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-post]");
    if (!form) return;
    event.preventDefault();
    if (!(await confirmed(form.dataset.confirm))) return;
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      await call("POST", form.dataset.post, new URLSearchParams(new FormData(form, event.submitter)));
    } catch (error) {
      say(error.message, true);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });

  window.addEventListener("hashchange", load);
  if (tg) {
    tg.ready();
    if (tg.expand) tg.expand();
  }
  if (!initData) {
    main.innerHTML = "";
    say("Open Tickler from its button in Telegram: this page signs you in through Telegram.", true);
    return;
  }
  load();
})();
