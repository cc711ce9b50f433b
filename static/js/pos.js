/*
 * The cashier's desk (POS): keyboard shortcuts, the refund dialogs and the change for cash.
 *
 *   F2   focus the patient search          F4   focus the payment's first amount
 *   F8   open the latest payment's refund   Esc  close the dialog (the browser's own)
 *
 * Everything else is plain HTML forms: Enter submits the form the focus is in, and the page
 * answers with a redirect (or, on a refusal, the page again with the reason by the field).
 * The receipts table refreshes itself through htmx while a receipt is not printed.
 */
(function () {
  "use strict";

  function amount(value) {
    var text = String(value || "").trim().replace(",", ".");
    if (!/^\d+(\.\d{0,2})?$/.test(text)) {
      return null;
    }
    // Work in kopecks: no binary fractions in money.
    var pieces = text.split(".");
    var cents = (pieces[1] || "").padEnd(2, "0");
    return parseInt(pieces[0], 10) * 100 + parseInt(cents, 10);
  }

  function show(cents) {
    if (cents === null) {
      return "—";
    }
    var sign = cents < 0 ? "−" : "";
    var value = Math.abs(cents);
    return sign + Math.floor(value / 100) + "." + String(value % 100).padStart(2, "0");
  }

  function payForm() {
    return document.querySelector("[data-pay-form]");
  }

  function recalculate() {
    var form = payForm();
    if (!form) {
      return;
    }
    var chosen = form.querySelector("input[name=invoice]:checked");
    var due = chosen ? amount(chosen.getAttribute("data-due")) : null;
    var entered = 0;
    form.querySelectorAll("[data-pay-amount]").forEach(function (input) {
      var value = amount(input.value);
      if (value !== null) {
        entered += value;
      }
    });
    var cashInput = form.querySelector("[data-pay-amount=cash]");
    var cash = cashInput ? amount(cashInput.value) : null;
    var given = amount(form.querySelector("[data-cash-given]").value);
    form.querySelector("[data-due-total]").textContent = show(due);
    form.querySelector("[data-entered-total]").textContent = show(entered);
    form.querySelector("[data-change]").textContent =
      given !== null && cash !== null ? show(given - cash) : "—";
  }

  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && typeof dialog.showModal === "function" && !dialog.open) {
      dialog.showModal();
      var first = dialog.querySelector("input:not([type=hidden]), button");
      if (first) {
        first.focus();
      }
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "F2") {
      var search = document.querySelector("[data-pos-search]");
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
    } else if (event.key === "F4") {
      var first = document.querySelector("[data-pay-amount]");
      if (first) {
        event.preventDefault();
        first.focus();
        first.select();
      }
    } else if (event.key === "F8") {
      var button = document.querySelector("[data-refund-button]");
      if (button) {
        event.preventDefault();
        openDialog(button.getAttribute("data-open-dialog"));
      }
    }
  });

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      openDialog(opener.getAttribute("data-open-dialog"));
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      var dialog = closer.closest("dialog");
      if (dialog) {
        dialog.close();
      }
    }
  });

  document.addEventListener("input", function (event) {
    if (event.target.closest("[data-pay-form]")) {
      recalculate();
    }
  });
  document.addEventListener("change", function (event) {
    if (event.target.closest("[data-pay-form]")) {
      recalculate();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    recalculate();
    var failed = document.querySelector("dialog[data-open-on-load]");
    if (failed) {
      openDialog(failed.id);
      var invalid = failed.querySelector(".field--error input, [role=alert]");
      if (invalid && invalid.focus) {
        invalid.focus();
      }
    } else {
      var error = document.querySelector("[data-pay-form] [aria-invalid=true]");
      if (error) {
        error.focus();
      }
    }
  });
})();
