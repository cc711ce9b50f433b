/*
 * Live updates of the schedule grid: what anyone changes shows on every open grid at once.
 *
 * Wiring, through data attributes (the CSP forbids inline scripts):
 *   data-live-events-url    on the grid's container (or the [data-schedule-grid] element itself):
 *                           the Server-Sent Events stream, desk:schedule_events;
 *   data-live-version-url   on the same element: the change counter to poll, desk:schedule_version;
 *   data-branch             on [data-schedule-grid]: the branch's public id, added to both URLs as
 *                           ?branch= unless the URL already names one;
 *   data-days               on [data-schedule-grid]: the dates shown, "YYYY-MM-DD" separated by
 *                           spaces (used for detail.onScreen).
 *
 * Every change is dispatched on document as the CustomEvent "schedule:changed", whose detail is
 * the server's message ({kind, branch, resources, days, version}) plus onScreen: true when one of
 * its days is shown (or when it cannot tell). After a reconnect whose version differs from the
 * last one seen, a {kind: "resync"} change is dispatched, since messages may have been missed.
 *
 * Without EventSource, or after more than 3 failures in a row, the version URL is polled every
 * 1.5 s instead and a change of version is dispatched the same way. The grid's own htmx swaps are
 * followed: a grid of another branch reconnects to that branch.
 */
(function () {
  "use strict";

  var POLL_MS = 1500;
  var MAX_FAILURES = 3;

  var source = null;
  var pollTimer = null;
  var failures = 0;
  var lastVersion = null;
  var currentKey = null;

  function gridElement() {
    return document.querySelector("[data-schedule-grid]");
  }

  function withBranch(url, branch) {
    if (!url || !branch || /[?&]branch=/.test(url)) {
      return url;
    }
    return url + (url.indexOf("?") === -1 ? "?" : "&") + "branch=" + encodeURIComponent(branch);
  }

  function endpoints() {
    var grid = gridElement();
    if (!grid) {
      return null;
    }
    var host = grid.closest("[data-live-events-url]");
    if (!host) {
      return null;
    }
    var branch = grid.getAttribute("data-branch") || "";
    return {
      events: withBranch(host.getAttribute("data-live-events-url"), branch),
      version: withBranch(host.getAttribute("data-live-version-url"), branch)
    };
  }

  function onScreen(days) {
    var grid = gridElement();
    var shown = grid ? (grid.getAttribute("data-days") || "").split(/\s+/) : [];
    if (!days || !days.length || !shown.join("")) {
      return true;
    }
    return days.some(function (day) {
      return shown.indexOf(day) !== -1;
    });
  }

  function dispatch(detail) {
    detail.onScreen = onScreen(detail.days);
    document.dispatchEvent(new CustomEvent("schedule:changed", { detail: detail }));
  }

  function seeVersion(version, kindIfChanged) {
    if (typeof version !== "number") {
      return;
    }
    if (lastVersion !== null && version !== lastVersion && kindIfChanged) {
      dispatch({ kind: kindIfChanged, resources: [], days: [], version: version });
    }
    lastVersion = version;
  }

  function parse(data) {
    try {
      return JSON.parse(data);
    } catch (error) {
      return null;
    }
  }

  function stop() {
    if (source) {
      source.close();
      source = null;
    }
    if (pollTimer) {
      window.clearInterval(pollTimer);
      pollTimer = null;
    }
  }

  function poll(url) {
    if (!url) {
      return;
    }
    stop();
    var busy = false;
    function tick() {
      if (busy) {
        return;
      }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          return response.ok && !response.redirected ? response.json() : null;
        })
        .then(function (body) {
          if (body) {
            seeVersion(body.version, "resync");
          }
        })
        .catch(function () {
          /* the next tick tries again */
        })
        .then(function () {
          busy = false;
        });
    }
    tick();
    pollTimer = window.setInterval(tick, POLL_MS);
  }

  function listen(urls) {
    stop();
    if (typeof window.EventSource === "undefined") {
      poll(urls.version);
      return;
    }
    failures = 0;
    source = new EventSource(urls.events, { withCredentials: true });
    source.addEventListener("open", function () {
      failures = 0;
    });
    source.addEventListener("version", function (event) {
      var body = parse(event.data);
      if (body) {
        seeVersion(body.version, "resync");
      }
    });
    source.addEventListener("schedule", function (event) {
      var message = parse(event.data);
      if (!message) {
        return;
      }
      lastVersion = typeof message.version === "number" ? message.version : lastVersion;
      dispatch(message);
    });
    source.addEventListener("error", function () {
      failures += 1;
      // CLOSED: the server refused the stream (403, 503...); the browser will not retry it.
      if (failures > MAX_FAILURES || source.readyState === EventSource.CLOSED) {
        poll(urls.version);
      }
    });
  }

  function connect() {
    var urls = endpoints();
    var key = urls ? urls.events + " " + urls.version : null;
    if (key === currentKey) {
      return;
    }
    currentKey = key;
    lastVersion = null;
    stop();
    if (urls && urls.events) {
      listen(urls);
    } else if (urls && urls.version) {
      poll(urls.version);
    }
  }

  document.addEventListener("DOMContentLoaded", connect);
  // The grid is swapped by htmx when the branch, the date or a filter changes.
  document.addEventListener("htmx:afterSettle", connect);
  window.addEventListener("pagehide", function () {
    stop();
    currentKey = null;
  });
  window.addEventListener("pageshow", connect);
})();
