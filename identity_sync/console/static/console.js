// The live progress bar of a job's page: polls the page's JSON endpoint every 2 seconds (no
// inline script: the Content-Security-Policy allows scripts from the console's own files only).
"use strict";
(function () {
  const section = document.getElementById("progress");
  if (!section) return;
  const text = document.getElementById("progress-text");
  const bar = document.getElementById("progress-bar");
  async function poll() {
    try {
      const response = await fetch(section.dataset.url, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { text.textContent = "Your session has ended: reload to log in again."; return; }
      if (response.ok) {
        const p = await response.json();
        if (p.running) {
          text.textContent = `${p.kind} cycle, ${p.phase}: ${p.done} of ${p.total} (${p.percent} %)`;
          bar.max = Math.max(p.total, 1);
          bar.value = p.done;
          bar.hidden = false;
        } else {
          text.textContent = "No cycle is running.";
          bar.hidden = true;
        }
      }
    } catch (error) {
      // The service is restarting or the network is down: try again at the next tick.
    }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
})();
