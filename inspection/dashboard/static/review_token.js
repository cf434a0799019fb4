// The reviewer's token: typed once per tab, kept in sessionStorage (never a cookie, so the browser
// never sends it by itself), sent by review.js in the X-Review-Token header.
(function () {
  "use strict";
  const KEY = "inspection-review-token";
  const input = document.getElementById("review-token");
  const use = document.getElementById("review-token-use");
  const name = document.getElementById("reviewer-name");
  if (!input || !use) return;
  async function check(token) {
    const answer = await fetch("/api/review/me", { headers: { "X-Review-Token": token, Accept: "application/json" } });
    if (!answer.ok) { name.textContent = "token refused (" + answer.status + ")"; sessionStorage.removeItem(KEY); return; }
    sessionStorage.setItem(KEY, token);
    name.textContent = "reviewing as " + (await answer.json()).reviewer;
    name.dataset.signedIn = "true";
    input.value = "";
  }
  use.addEventListener("click", () => check(input.value.trim()));
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); check(input.value.trim()); } });
  const saved = sessionStorage.getItem(KEY);
  if (saved) check(saved);
})();
