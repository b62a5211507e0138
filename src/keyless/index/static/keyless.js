// Progressive enhancement only: every page works without this file.
// The publisher form's workflow preview follows what is typed (the server renders the
// snippet, so the preview and the "Preview workflow" button always agree).
"use strict";
(function () {
  const form = document.getElementById("publisher-form");
  const target = document.getElementById("snippet");
  if (!form || !target || !window.fetch) {
    return;
  }
  let timer = null;
  let latest = 0;
  function refresh() {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (name !== "csrf_token" && name !== "action") {
        params.append(name, String(value));
      }
    }
    if (!params.has("index")) {
      params.set("index", form.dataset.index || "");
    }
    const ticket = ++latest;
    fetch(form.dataset.preview + "?" + params.toString(), { credentials: "same-origin" })
      .then((answer) => (answer.ok ? answer.text() : null))
      .then((text) => {
        if (text !== null && ticket === latest) {
          target.textContent = text;
        }
      })
      .catch(() => {});
  }
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
})();
