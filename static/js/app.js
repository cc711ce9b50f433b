/*
 * Clinic ERP — behaviour shared by every page.
 *
 * The Content-Security-Policy forbids inline scripts and eval, so everything a page needs is
 * wired here through data attributes:
 *   data-hx-headers (on <body>)     the CSRF header htmx sends (read by htmx itself);
 *   data-messages                   the list that receives messages; its data-error-network and
 *                                   data-error-server attributes hold the translated texts
 *                                   shown when an htmx request fails;
 *   data-dismiss                    a button that removes its closest [data-dismissible];
 *   data-once                       a form whose submit buttons are disabled after the first
 *                                   submit, so a double click does not post twice.
 */
(function () {
  "use strict";

  function messagesList() {
    return document.querySelector("[data-messages]");
  }

  function showMessage(text, level) {
    var list = messagesList();
    if (!list || !text) {
      return;
    }
    var item = document.createElement("li");
    item.className = "message message--" + level;
    item.setAttribute("role", "alert");
    item.setAttribute("data-dismissible", "");
    var body = document.createElement("span");
    body.className = "message__text";
    body.textContent = text;
    item.appendChild(body);
    list.appendChild(item);
    list.hidden = false;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss]");
    if (!button) {
      return;
    }
    var target = button.closest("[data-dismissible]");
    if (target) {
      target.remove();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-once")) {
      return;
    }
    if (form.dataset.submitted === "true") {
      event.preventDefault();
      return;
    }
    form.dataset.submitted = "true";
    // Disable after this tick so the clicked button's name/value is still submitted.
    window.setTimeout(function () {
      form.querySelectorAll("button[type=submit], input[type=submit]").forEach(function (b) {
        b.disabled = true;
      });
    }, 0);
  });

  // A page restored from the back/forward cache must accept a new submit.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-once]").forEach(function (form) {
      delete form.dataset.submitted;
      form.querySelectorAll("button[type=submit], input[type=submit]").forEach(function (b) {
        b.disabled = false;
      });
    });
  });

  // htmx does not swap error responses; tell the user instead of failing silently.
  document.addEventListener("htmx:responseError", function (event) {
    var list = messagesList();
    var status = event.detail && event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 401 || status === 403) {
      // The session has ended (idle timeout) or access was withdrawn: reload to log in again.
      window.location.reload();
      return;
    }
    showMessage(list && list.getAttribute("data-error-server"), "error");
  });

  document.addEventListener("htmx:sendError", function () {
    var list = messagesList();
    showMessage(list && list.getAttribute("data-error-network"), "error");
  });
})();

/*
 * data-confirm on a form: ask before submitting (merging and unmerging people). The question is
 * the attribute's (translated) text; cancelling keeps the page as it is.
 */
(function () {
  "use strict";

  document.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) {
        return;
      }
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    true
  );
})();
