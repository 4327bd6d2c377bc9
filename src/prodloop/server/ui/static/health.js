// prodloop feature health page: an alert card (or a cluster's form) answered with 404, 409 or 422
// carries its problem; show it in place (htmx leaves error answers unswapped by default).
// charts.js draws the charts.
(function () {
  "use strict";

  document.addEventListener("htmx:beforeSwap", function (event) {
    const status = event.detail.xhr.status;
    const target = event.detail.target;
    if ((status === 404 || status === 409 || status === 422) && target && target.matches(".alert-card, .cluster-route")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
