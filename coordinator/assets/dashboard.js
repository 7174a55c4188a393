// Progressive only: every page works without this. It shows times in the visitor's time
// zone and refreshes a share's live peers in place (same rows, fixed columns: no jump).
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (!isNaN(at)) {
        el.textContent = at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
        el.title = el.getAttribute("datetime");
      }
    });
  }
  function refreshPeers(table) {
    var url = table.getAttribute("data-live");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var body = table.querySelector("tbody");
        var next = document.createElement("tbody");
        table.replaceChild(next, body);
        next.outerHTML = html;
      })
      .catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("table[data-live]").forEach(function (table) {
      setInterval(function () { refreshPeers(table); }, 3000);
    });
  });
})();
