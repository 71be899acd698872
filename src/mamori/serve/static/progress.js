// mamori serve: follow a running check. Without JavaScript, <noscript> refreshes the page.
(function () {
  "use strict";
  var box = document.getElementById("check");
  if (!box) { return; }
  var url = box.getAttribute("data-status-url");
  var bar = document.getElementById("bar");
  var percent = document.getElementById("percent");
  var stage = document.getElementById("stage");
  var status = document.getElementById("status");
  var delay = 1000;
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.status === "done" || s.status === "failed" || s.status === "gone") {
          window.location.reload();
          return;
        }
        bar.value = s.percent; bar.textContent = s.percent + " %";
        percent.textContent = s.percent; stage.textContent = s.stage; status.textContent = s.status;
        delay = 1000;
        window.setTimeout(poll, delay);
      })
      .catch(function () { delay = Math.min(delay * 2, 15000); window.setTimeout(poll, delay); });
  }
  window.setTimeout(poll, delay);
})();
