/*
 * The schedule grid (/desk/schedule/): clicks, keys, drag and drop and the context menu.
 *
 * Everything is wired through data attributes the server renders (CSP forbids inline scripts):
 *   [data-desk-grid]            the grid's container, with the URLs of the actions
 *                               (data-slot-url, data-appointment-url, data-move-url, ...; the
 *                               appointment URLs hold a zero UUID replaced by the appointment's);
 *   td.slot[data-kind]          a cell: free, held, booked, break, absent, off; data-doctor and
 *                               data-starts say where it is; a booked one has data-appointment;
 *   #desk-dialog                the dialog the forms open in (#desk-dialog-body is swapped);
 *   #desk-menu                  the context menu of an appointment;
 *   [data-waitlist-entry], [data-trash-appointment]
 *                               panel items that can be dragged onto a free cell.
 * The server answers every change with an HX-Trigger "schedule-changed", on which the grid and
 * the panels reload themselves (hx-trigger in the template).
 */
(function () {
  "use strict";

  var ZERO = "00000000-0000-0000-0000-000000000000";
  var clipboard = null; // {mode: "cut" | "copy", appointment: id}

  function grid() {
    return document.querySelector("[data-desk-grid]");
  }

  function url(name, appointment) {
    var container = grid();
    var value = container ? container.getAttribute("data-" + name + "-url") : "";
    return appointment ? value.replace(ZERO, appointment) : value;
  }

  // A cell names its column's position; the column's header names the doctor.
  function doctorOf(cell) {
    var header = document.querySelector('th[data-col="' + cell.getAttribute("data-col") + '"]');
    return header ? header.getAttribute("data-column") : "";
  }

  function dialog() {
    return document.getElementById("desk-dialog");
  }

  function openDialog() {
    var element = dialog();
    if (element && !element.open) {
      element.showModal();
    }
  }

  function load(method, address, values) {
    return window.htmx.ajax(method, address, {
      target: "#desk-dialog-body",
      swap: "innerHTML",
      values: values || {},
    });
  }

  function releaseHeld(button) {
    var release = button && button.getAttribute("data-release-url");
    if (release) {
      window.htmx.ajax("POST", release, {
        swap: "none",
        values: { doctor: button.getAttribute("data-doctor"), starts: button.getAttribute("data-starts") },
      });
    }
  }

  function closeDialog() {
    var element = dialog();
    if (!element) {
      return;
    }
    releaseHeld(element.querySelector("[data-release-url]"));
    element.close();
    document.getElementById("desk-dialog-body").innerHTML = "";
  }

  function showClipboard() {
    var note = document.getElementById("desk-clipboard");
    if (!note) {
      return;
    }
    if (!clipboard) {
      note.hidden = true;
      return;
    }
    note.textContent = note.getAttribute("data-" + clipboard.mode + "-label");
    note.hidden = false;
  }

  function openSlot(cell, extra) {
    if (clipboard) {
      var action = clipboard.mode === "cut" ? "move" : "copy";
      var values = { starts_at: cell.getAttribute("data-starts"), doctor: doctorOf(cell) };
      load("POST", url(action, clipboard.appointment), values).then(openDialog);
      clipboard = null;
      showClipboard();
      return;
    }
    var query = new URLSearchParams({ doctor: doctorOf(cell), starts: cell.getAttribute("data-starts") });
    if (extra) {
      Object.keys(extra).forEach(function (key) { query.set(key, extra[key]); });
    }
    load("GET", url("slot") + "?" + query.toString()).then(openDialog);
  }

  function openAppointment(cell) {
    load("GET", url("appointment", cell.getAttribute("data-appointment"))).then(openDialog);
  }

  // htmx leaves 4xx answers unswapped; the dialog and the panels show their refusals in place.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    var target = event.detail.target;
    if ((status === 400 || status === 409) && target && target.closest("#desk-dialog, .panels, [data-desk-grid]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "desk-dialog-body") {
      openDialog();
      var focus = event.detail.target.querySelector("[autofocus]");
      if (focus) {
        focus.focus();
      }
    }
  });

  document.addEventListener("click", function (event) {
    var close = event.target.closest("[data-dialog-close]");
    if (close) {
      closeDialog();
      return;
    }
    var pick = event.target.closest("[data-pick-patient]");
    if (pick) {
      var form = pick.closest("form");
      form.querySelector("[data-patient-id]").value = pick.getAttribute("data-pick-patient");
      var chosen = form.querySelector("[data-patient-chosen]");
      chosen.textContent = "✓ " + pick.getAttribute("data-pick-name");
      chosen.hidden = false;
      form.querySelectorAll(".picker").forEach(function (list) { list.innerHTML = ""; });
      return;
    }
    var copy = event.target.closest("[data-copy-text]");
    if (copy && navigator.clipboard) {
      navigator.clipboard.writeText(copy.getAttribute("data-copy-text"));
      copy.textContent = copy.getAttribute("data-copied-label");
      return;
    }
    var freeTime = event.target.closest("[data-open-free-time]");
    if (freeTime) {
      load("GET", freeTime.getAttribute("data-open-free-time")).then(openDialog);
      return;
    }
    var freeSlot = event.target.closest("[data-free-slot]");
    if (freeSlot) {
      var query = new URLSearchParams({ doctor: freeSlot.getAttribute("data-doctor"), starts: freeSlot.getAttribute("data-starts") });
      load("GET", url("slot") + "?" + query.toString()).then(openDialog);
      return;
    }
    var priceLookup = event.target.closest("[data-price-lookup]");
    if (priceLookup) {
      event.preventDefault();
      var box = priceLookup.closest("form").querySelector("[data-price-box]");
      var lookup = new URLSearchParams({ branch: priceLookup.getAttribute("data-branch") });
      window.htmx.ajax("GET", priceLookup.getAttribute("data-url") + "?" + lookup.toString(), { target: box, swap: "innerHTML" });
      return;
    }
    var choose = event.target.closest("[data-choose-service]");
    if (choose && choose.closest("[data-price-box]")) {
      var form = choose.closest("form");
      var checkbox = form.querySelector('input[name=services][value="' + choose.getAttribute("data-service-code") + '"]');
      if (checkbox) {
        checkbox.checked = true;
      }
      return;
    }
    var menuButton = event.target.closest("[data-menu-action]");
    if (menuButton) {
      menuAction(menuButton);
      return;
    }
    hideMenu();
    var cell = event.target.closest("td.slot");
    if (cell && cell.getAttribute("data-kind") === "free") {
      openSlot(cell);
    }
  });

  document.addEventListener("dblclick", function (event) {
    var cell = event.target.closest("td.slot[data-appointment]");
    if (cell) {
      openAppointment(cell);
    }
  });

  // The dialog's Esc closes it through "cancel": give up the held slot too.
  document.addEventListener("cancel", function (event) {
    if (event.target === dialog()) {
      event.preventDefault();
      closeDialog();
    }
  }, true);

  document.addEventListener("keydown", function (event) {
    var cell = event.target.closest && event.target.closest("td.slot");
    if (event.key === "Enter" && cell) {
      event.preventDefault();
      if (cell.hasAttribute("data-appointment")) {
        openAppointment(cell);
      } else if (cell.getAttribute("data-kind") === "free") {
        openSlot(cell);
      }
      return;
    }
    if (cell && cell.hasAttribute("data-appointment") && (event.ctrlKey || event.metaKey)) {
      if (event.key === "x" || event.key === "c") {
        clipboard = { mode: event.key === "x" ? "cut" : "copy", appointment: cell.getAttribute("data-appointment") };
        showClipboard();
        event.preventDefault();
        return;
      }
    }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      var form = event.target.closest && event.target.closest("form[data-booking]");
      if (form) {
        event.preventDefault();
        window.htmx.trigger(form, "submit");
      }
      return;
    }
    if (event.key === "Escape" && clipboard) {
      clipboard = null;
      showClipboard();
      return;
    }
    if (event.altKey && (event.key === "f" || event.key === "F")) {
      var finder = document.querySelector("[data-open-free-time]");
      if (finder) {
        event.preventDefault();
        finder.click();
      }
      return;
    }
    if (event.altKey && (event.key === "ArrowLeft" || event.key === "ArrowRight")) {
      var link = document.querySelector(event.key === "ArrowLeft" ? "[data-grid-previous]" : "[data-grid-next]");
      if (link) {
        event.preventDefault();
        link.click();
      }
      return;
    }
    if (cell && event.key.indexOf("Arrow") === 0 && !event.altKey) {
      moveFocus(cell, event.key);
      event.preventDefault();
    }
  });

  function moveFocus(cell, key) {
    var cells = Array.prototype.slice.call(document.querySelectorAll("td.slot[tabindex]"));
    var box = cell.getBoundingClientRect();
    var best = null;
    var bestDistance = Infinity;
    cells.forEach(function (other) {
      if (other === cell) {
        return;
      }
      var r = other.getBoundingClientRect();
      var dx = r.left - box.left;
      var dy = r.top - box.top;
      var ok = (key === "ArrowDown" && dy > 0) || (key === "ArrowUp" && dy < 0) ||
        (key === "ArrowRight" && dx > 0) || (key === "ArrowLeft" && dx < 0);
      if (!ok) {
        return;
      }
      var vertical = key === "ArrowDown" || key === "ArrowUp";
      var distance = vertical ? Math.abs(dy) + 4 * Math.abs(dx) : Math.abs(dx) + 4 * Math.abs(dy);
      if (distance < bestDistance) {
        bestDistance = distance;
        best = other;
      }
    });
    if (best) {
      best.focus();
    }
  }

  // ---- the context menu -------------------------------------------------------------------

  var menuCell = null;

  function hideMenu() {
    var menu = document.getElementById("desk-menu");
    if (menu) {
      menu.hidden = true;
    }
    menuCell = null;
  }

  document.addEventListener("contextmenu", function (event) {
    var cell = event.target.closest("td.slot[data-appointment]");
    var menu = document.getElementById("desk-menu");
    if (!cell || !menu) {
      return;
    }
    event.preventDefault();
    menuCell = cell;
    menu.hidden = false;
    menu.style.left = Math.min(event.clientX, window.innerWidth - menu.offsetWidth - 8) + "px";
    menu.style.top = Math.min(event.clientY, window.innerHeight - menu.offsetHeight - 8) + "px";
    menu.querySelector("[data-menu-action=whatsapp]").hidden = !cell.hasAttribute("data-phone");
    menu.querySelector("[data-menu-action=phone]").hidden = !cell.hasAttribute("data-phone");
    menu.querySelector("[data-menu-action=patient]").hidden = !cell.hasAttribute("data-patient-url");
    menu.querySelector("button").focus();
  });

  function menuAction(button) {
    var cell = menuCell;
    hideMenu();
    if (!cell) {
      return;
    }
    var appointment = cell.getAttribute("data-appointment");
    var action = button.getAttribute("data-menu-action");
    var phone = cell.getAttribute("data-phone") || "";
    if (action === "open" || action === "cancel" || action === "history") {
      load("GET", url("appointment", appointment)).then(function () {
        openDialog();
        var part = action === "cancel" ? "[data-cancel-form] select" : action === "history" ? "[data-history-panel]" : null;
        var element = part && document.querySelector("#desk-dialog " + part);
        if (element && action === "history") {
          element.open = true;
        }
        if (element) {
          element.scrollIntoView();
          element.focus && element.focus();
        }
      });
    } else if (action === "status") {
      load("POST", url("status", appointment), { status: button.getAttribute("data-status") }).then(openDialog);
    } else if (action === "cut" || action === "copy") {
      clipboard = { mode: action, appointment: appointment };
      showClipboard();
    } else if (action === "patient") {
      window.location.href = cell.getAttribute("data-patient-url");
    } else if (action === "whatsapp" && phone) {
      window.open("https://wa.me/" + phone.replace(/^\+/, ""), "_blank", "noopener");
    } else if (action === "phone" && phone && navigator.clipboard) {
      navigator.clipboard.writeText(phone);
    } else if (action === "slip") {
      window.open(cell.getAttribute("data-slip-url"), "_blank", "noopener");
    }
  }

  // ---- drag and drop: move an appointment, book a waitlist entry, restore from the trash ----

  document.addEventListener("dragstart", function (event) {
    var source = event.target.closest("[data-appointment], [data-waitlist-entry], [data-trash-appointment]");
    if (!source || !event.dataTransfer) {
      return;
    }
    var payload = source.hasAttribute("data-waitlist-entry")
      ? { kind: "waitlist", id: source.getAttribute("data-waitlist-entry") }
      : source.hasAttribute("data-trash-appointment")
        ? { kind: "trash", id: source.getAttribute("data-trash-appointment") }
        : { kind: "appointment", id: source.getAttribute("data-appointment") };
    event.dataTransfer.setData("application/x-clinic-slot", JSON.stringify(payload));
    event.dataTransfer.effectAllowed = "move";
  });

  document.addEventListener("dragover", function (event) {
    var cell = event.target.closest("td.slot");
    if (cell && cell.getAttribute("data-kind") === "free") {
      event.preventDefault();
      cell.classList.add("slot--drop");
    }
  });

  document.addEventListener("dragleave", function (event) {
    var cell = event.target.closest && event.target.closest("td.slot");
    if (cell) {
      cell.classList.remove("slot--drop");
    }
  });

  document.addEventListener("drop", function (event) {
    var cell = event.target.closest("td.slot");
    if (!cell || cell.getAttribute("data-kind") !== "free") {
      return;
    }
    event.preventDefault();
    cell.classList.remove("slot--drop");
    var raw = event.dataTransfer.getData("application/x-clinic-slot");
    if (!raw) {
      return;
    }
    var payload = JSON.parse(raw);
    var values = { starts_at: cell.getAttribute("data-starts"), doctor: doctorOf(cell) };
    if (payload.kind === "waitlist") {
      openSlot(cell, { waitlist: payload.id });
    } else if (payload.kind === "trash") {
      load("POST", url("restore", payload.id), values).then(openDialog);
    } else {
      load("POST", url("move", payload.id), values).then(openDialog);
    }
  });

  // ---- resizing: drag an appointment's lower edge to change its duration ------------------

  document.addEventListener("pointerdown", function (event) {
    var handle = event.target.closest("[data-resize]");
    if (!handle) {
      return;
    }
    event.preventDefault();
    var cell = handle.closest("td.slot");
    var table = cell.closest("[data-schedule-grid]");
    var step = parseInt(table.getAttribute("data-step"), 10);
    var row = table.querySelector("tbody tr");
    var rowHeight = row ? row.getBoundingClientRect().height : 20;
    var startY = event.clientY;
    var minutes = parseInt(cell.getAttribute("data-minutes"), 10);
    cell.classList.add("slot--resizing");

    function finish(up) {
      document.removeEventListener("pointerup", finish);
      cell.classList.remove("slot--resizing");
      var rows = Math.round((up.clientY - startY) / rowHeight);
      var duration = Math.max(step, minutes + rows * step);
      if (duration !== minutes) {
        load("POST", url("move", cell.getAttribute("data-appointment")), { duration_minutes: duration }).then(openDialog);
      }
    }
    document.addEventListener("pointerup", finish);
  });

  // ---- live updates: another screen changed the schedule (desk-live.js) ----------------------

  function showCall(callId) {
    var popup = document.getElementById("desk-call");
    if (!popup) {
      return;
    }
    window.htmx.ajax("GET", url("call", callId), { target: "#desk-call-body", swap: "innerHTML" }).then(function () {
      popup.hidden = false;
    });
  }

  function noticePortalBooking(appointment) {
    var list = document.getElementById("desk-notices");
    if (!list) {
      return;
    }
    var item = document.createElement("li");
    item.className = "notice";
    item.setAttribute("data-portal-notice", appointment);
    var text = document.createElement("span");
    text.textContent = list.getAttribute("data-portal-label");
    var open = document.createElement("button");
    open.type = "button";
    open.className = "button button--small";
    open.textContent = list.getAttribute("data-open-label");
    open.addEventListener("click", function () {
      item.remove();
      load("GET", url("appointment", appointment)).then(openDialog);
    });
    item.appendChild(text);
    item.appendChild(open);
    list.appendChild(item);
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-call-close]")) {
      document.getElementById("desk-call").hidden = true;
    }
  });

  var refreshTimer = null;
  document.addEventListener("schedule:changed", function (event) {
    var detail = event.detail || {};
    if (detail.kind === "call" && detail.call) {
      showCall(detail.call);
      return;
    }
    if (detail.kind === "booked" && detail.channel === "portal" && detail.appointment) {
      noticePortalBooking(detail.appointment);
    }
    if (!(detail.onScreen || detail.kind === "resync")) {
      return;
    }
    // A burst of changes (a booking is a hold, then a booking) becomes one refresh.
    window.clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(function () {
      var container = grid();
      if (container) {
        window.htmx.trigger(container, "schedule-refresh");
      }
    }, 200);
  });

  // ---- the current-time line ----------------------------------------------------------------

  function markNow() {
    var table = document.querySelector("[data-schedule-grid]");
    if (!table) {
      return;
    }
    var zone = table.getAttribute("data-time-zone");
    var parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date());
    var get = function (type) { return parts.find(function (p) { return p.type === type; }).value; };
    var today = get("year") + "-" + get("month") + "-" + get("day");
    var minute = parseInt(get("hour"), 10) * 60 + parseInt(get("minute"), 10);
    var step = parseInt(table.getAttribute("data-step"), 10);
    var shown = (table.getAttribute("data-days") || "").split(" ").indexOf(today) !== -1;
    table.querySelectorAll("tr.is-now").forEach(function (tr) { tr.classList.remove("is-now"); });
    if (!shown) {
      return;
    }
    table.querySelectorAll("tbody tr[data-minute]").forEach(function (tr) {
      var start = parseInt(tr.getAttribute("data-minute"), 10);
      if (start <= minute && minute < start + step) {
        tr.classList.add("is-now");
      }
    });
  }

  document.addEventListener("htmx:afterSettle", markNow);
  document.addEventListener("DOMContentLoaded", markNow);
  window.setInterval(markNow, 30000);
})();
