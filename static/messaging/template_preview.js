/* The message template form: the text filled with sample values, shown while it is typed. */
(function () {
  "use strict";
  function start() {
    var marker = document.querySelector("[data-preview-url]");
    var body = document.getElementById("id_body");
    var shown = document.querySelector("[data-template-preview]");
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (!marker || !body || !shown || !token) { return; }
    var timer = null;
    function refresh() {
      var data = new FormData();
      data.append("body", body.value);
      fetch(marker.getAttribute("data-preview-url"), {
        method: "POST",
        body: data,
        headers: { "X-CSRFToken": token.value },
        credentials: "same-origin"
      }).then(function (response) { return response.json(); }).then(function (answer) {
        shown.textContent = answer.text || "";
        shown.classList.toggle("errornote", (answer.unknown || []).length > 0);
        if ((answer.unknown || []).length) {
          shown.textContent += "\n\n" + answer.unknown.join(", ") + " ?";
        }
      });
    }
    body.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 300);
    });
    refresh();
  }
  document.addEventListener("DOMContentLoaded", start);
})();
