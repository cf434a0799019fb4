// Live pages: poll the change mark; when it moves, fetch this page again and swap <main>.
// At most poll_s (<= 5 s) behind the database. No framework; the token travels as a cookie.
(function () {
  "use strict";
  const main = document.getElementById("main");
  if (!main || !main.dataset.liveMark) return;
  const pollMs = Math.max(500, 1000 * parseFloat(main.dataset.pollS || "2"));
  const badge = document.getElementById("live-state");
  let mark = main.dataset.liveMark;
  let busy = false;
  async function tick() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch("/api/line/mark", { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!answer.ok) return;
      const next = (await answer.json()).mark;
      if (next === mark) return;
      const page = await fetch(window.location.href, { cache: "no-store" });
      if (!page.ok) return;
      const doc = new DOMParser().parseFromString(await page.text(), "text/html");
      const fresh = doc.getElementById("main");
      if (!fresh) return;
      main.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
      mark = fresh.dataset.liveMark || next;
      main.dataset.liveMark = mark;
      if (badge) { badge.hidden = false; badge.textContent = "updated " + new Date().toLocaleTimeString(); }
    } catch (err) {
      if (badge) { badge.hidden = false; badge.textContent = "dashboard unreachable"; }
    } finally {
      busy = false;
    }
  }
  window.setInterval(tick, pollMs);
})();
