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

// Copy buttons (the Tenant URL, a new secret): data-copy names the element whose text is copied.
(function () {
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    button.addEventListener("click", async function () {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      } catch (error) {
        // No clipboard (plain HTTP other than localhost): select the text for Ctrl+C instead.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    });
  });
})();
