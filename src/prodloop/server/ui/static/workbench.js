// prodloop annotation workbench: keyboard shortcuts for the annotator's page, and inline
// validation errors (htmx leaves 4xx answers unswapped unless told otherwise).
//
//   1..9   pick option n of the field that has the focus, else of the first unanswered field
//   Enter  submit the label (Ctrl+Enter inside a text box)
//   S      skip the item           E  escalate it (a note, and the field it is about)
//   G, ?   show or hide the guidelines          Esc  leave a text box, close a panel
(function () {
  "use strict";

  // A 422 carries the form again with its problems marked: show it in place of the item.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // After a swap: the keys work on the new item; an invalid field takes the focus.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail.target || event.detail.target.id !== "workbench") return;
    const escalate = document.getElementById("escalate-panel");
    if (escalate && !escalate.hidden) {
      const note = escalate.querySelector("textarea");
      if (note) note.focus();
      return;
    }
    const invalid = document.querySelector("#label-form fieldset.invalid");
    if (invalid) {
      invalid.focus();
    } else if (document.activeElement && document.activeElement !== document.body) {
      document.activeElement.blur();
    }
    markActive();
  });

  function typing(element) {
    if (!element) return false;
    const tag = element.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || element.isContentEditable) return true;
    if (tag !== "INPUT") return false;
    return !["radio", "checkbox", "button", "submit"].includes(element.type);
  }

  function optionFields() {
    return Array.from(document.querySelectorAll("#label-form fieldset.field")).filter(function (f) {
      return f.querySelector("input[type=radio], input[type=checkbox]");
    });
  }

  function answered(fieldset) {
    return fieldset.querySelector("input:checked") !== null;
  }

  // The field that digits act on: the one with the focus, else the first without an answer.
  function activeField() {
    const focused = document.activeElement && document.activeElement.closest("#label-form fieldset.field");
    if (focused && optionFields().includes(focused)) return focused;
    return optionFields().find(function (f) { return !answered(f); }) || null;
  }

  function markActive() {
    const active = activeField();
    document.querySelectorAll("#label-form fieldset.field").forEach(function (f) {
      f.classList.toggle("active", f === active);
    });
  }

  function pick(digit) {
    const field = activeField();
    if (!field) return;
    const inputs = field.querySelectorAll("input[type=radio], input[type=checkbox]");
    const input = inputs[digit - 1];
    if (!input) return;
    if (input.type === "checkbox") {
      input.checked = !input.checked;
      field.focus(); // more digits toggle more options of this field
    } else {
      input.checked = true;
      // on to the next field that still needs an answer; with none left, Enter submits
      const next = optionFields().find(function (f) { return f !== field && !answered(f); });
      if (next) next.focus();
      else if (document.activeElement) document.activeElement.blur();
    }
    input.dispatchEvent(new Event("change", { bubbles: true }));
    markActive();
  }

  function toggleGuidelines() {
    const panel = document.getElementById("guidelines");
    const button = document.getElementById("guidelines-toggle");
    if (!panel) return;
    panel.hidden = !panel.hidden;
    if (button) button.setAttribute("aria-expanded", String(!panel.hidden));
  }

  function openEscalation() {
    const panel = document.getElementById("escalate-panel");
    if (!panel) return;
    panel.hidden = false;
    // about the field being answered, when one has the focus
    const field = document.activeElement && document.activeElement.closest("#label-form fieldset.field");
    const select = panel.querySelector("select[name=field]");
    if (field && select && !select.value) select.value = field.dataset.field;
    panel.querySelector("textarea").focus();
  }

  function closeEscalation() {
    const panel = document.getElementById("escalate-panel");
    if (panel) panel.hidden = true;
  }

  function submit(form) {
    if (form) form.requestSubmit();
  }

  document.addEventListener("click", function (event) {
    const target = event.target.closest("button");
    if (!target) return;
    if (target.id === "guidelines-toggle") toggleGuidelines();
    else if (target.id === "escalate-button") openEscalation();
    else if (target.id === "escalate-cancel") closeEscalation();
  });

  document.addEventListener("focusin", markActive);
  document.addEventListener("change", markActive);

  document.addEventListener("keydown", function (event) {
    if (!document.getElementById("workbench")) return;
    const element = document.activeElement;
    const inEscalation = element && element.closest("#escalate-panel");
    if (event.key === "Escape") {
      if (inEscalation) closeEscalation();
      if (element && element !== document.body) element.blur();
      markActive();
      return;
    }
    if (event.key === "Enter") {
      if (element && ["A", "BUTTON", "SELECT"].includes(element.tagName)) return; // as the browser does
      if (element && element.tagName === "TEXTAREA" && !(event.ctrlKey || event.metaKey)) return;
      event.preventDefault();
      submit(inEscalation ? document.getElementById("escalate-panel") : document.getElementById("label-form"));
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(element)) return;
    if (event.key >= "1" && event.key <= "9") {
      event.preventDefault();
      pick(Number(event.key));
    } else if (event.key === "s" || event.key === "S") {
      const skip = document.getElementById("skip-button");
      if (skip) { event.preventDefault(); skip.click(); }
    } else if (event.key === "e" || event.key === "E") {
      event.preventDefault();
      openEscalation();
    } else if (event.key === "g" || event.key === "G" || event.key === "?") {
      event.preventDefault();
      toggleGuidelines();
    }
  });

  document.addEventListener("DOMContentLoaded", markActive);
})();
