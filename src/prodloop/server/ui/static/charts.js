// prodloop queue dashboard: draw each Vega-Lite chart whose specification the page carries as JSON.
// The UI's Content-Security-Policy forbids eval, so Vega evaluates expressions with vega-interpreter.
(function () {
  "use strict";

  function draw(element) {
    const source = document.getElementById(element.dataset.vegaSpec);
    if (!source) return;
    const spec = JSON.parse(source.textContent);
    const options = {
      actions: false,
      renderer: "svg",
      ast: true,
      expr: vega.expressionInterpreter,
      tooltip: { theme: "light" },
    };
    vegaEmbed(element, spec, options)
      .then(function () { element.dataset.rendered = "true"; })
      .catch(function (error) {
        element.dataset.rendered = "error";
        element.textContent = "This chart could not be drawn: " + error;
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-vega-spec]").forEach(draw);
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });
  });
})();
