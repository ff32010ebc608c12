// A run too large to draw its timeline within the page's own time (thousands of steps and
// branches) gets it after the page has loaded: the chart is fetched from the server, which
// escaped every stored string in it, and put in place of the note that said it was coming.
(function () {
  "use strict";

  function drawLater() {
    var holder = document.getElementById("timeline-later");
    if (!holder || holder.dataset.loading === "true") {
      return;
    }
    holder.dataset.loading = "true";
    fetch(holder.dataset.src, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var chart = new DOMParser().parseFromString(html, "text/html").querySelector(".timeline-chart");
        if (chart && document.body.contains(holder)) {
          holder.replaceWith(document.adoptNode(chart));
        }
      })
      .catch(function () {});
  }

  // The live page swaps in the ended page when its run ends: it calls this again for it.
  window.runlogDrawTimeline = drawLater;
  drawLater();
})();
