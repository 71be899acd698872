(function () {
  "use strict";
  var roots = document.querySelectorAll(".mamori-report");
  function copied(button, ok) {
    var label = button.getAttribute("data-label");
    button.textContent = button.getAttribute(ok ? "data-done" : "data-fail");
    window.setTimeout(function () { button.textContent = label; }, 2500);
  }
  function select(code) {
    var range = document.createRange();
    range.selectNodeContents(code);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  function fallback(button, code) {
    select(code);
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    copied(button, ok);
  }
  function copy(button) {
    var code = document.getElementById(button.getAttribute("data-target"));
    if (!code) { return; }
    var text = code.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(button, true); },
        function () { fallback(button, code); });
    } else {
      fallback(button, code);
    }
  }
  function setAll(root, open) {
    root.querySelectorAll("details").forEach(function (d) { d.open = open; });
  }
  roots.forEach(function (root) {
    root.classList.add("mr-js");
    root.querySelectorAll("button.mr-copy").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { copy(button); });
    });
    root.querySelectorAll("button.mr-open-all, button.mr-close-all").forEach(function (b) {
      b.hidden = false;
      b.addEventListener("click", function () {
        setAll(root, b.classList.contains("mr-open-all"));
      });
    });
  });
  var reopen = [];
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll(".mamori-report details:not([open])").forEach(function (d) {
      d.open = true;
      reopen.push(d);
    });
  });
  window.addEventListener("afterprint", function () {
    reopen.forEach(function (d) { d.open = false; });
    reopen = [];
  });
})();
