// Console-wide behaviour. htmx runs with allowEval off, so no hx-on attributes: listeners live here.
(function () {
  "use strict";
  var banner = document.getElementById("error-banner");

  function showBanner(html) {
    if (!banner) return;
    banner.innerHTML = html;
    banner.hidden = false;
    banner.scrollIntoView({ block: "nearest" });
  }

  function messageFor(xhr) {
    // The server's own banner fragment (errors/_banner.html) says best what went wrong; use its text only.
    if (xhr && xhr.responseText) {
      var fragment = new DOMParser().parseFromString(xhr.responseText, "text/html").querySelector("[data-error-code]");
      if (fragment) return fragment.innerHTML;
    }
    var status = xhr ? xhr.status : 0;
    if (status === 503) return "<strong>Temporarily unavailable.</strong> The database cannot be reached. What you typed is still here; try again in a moment.";
    if (status === 403) return "<strong>Not allowed.</strong> Your account cannot do that.";
    if (status === 404) return "<strong>Not found.</strong> It may have been removed.";
    return "<strong>Something went wrong.</strong> Nothing was changed; try again.";
  }

  document.body.addEventListener("htmx:responseError", function (event) {
    // Validation errors and refusals (422) come back as fragments meant to be swapped in place.
    if (event.detail.xhr.status === 422) return;
    showBanner(messageFor(event.detail.xhr));
  });
  document.body.addEventListener("htmx:sendError", function () {
    showBanner("<strong>Cannot reach the console.</strong> Check your connection; what you typed is still here.");
  });
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  // Screen readers hear that a region is being updated, and when it is done.
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.target) event.detail.target.setAttribute("aria-busy", "true");
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.target) event.detail.target.removeAttribute("aria-busy");
    if (event.detail.successful && banner) banner.hidden = true;
  });

  // <button data-print>: the browser's print dialog (the page's print styles leave the invoice alone).
  document.body.addEventListener("click", function (event) {
    if (event.target.closest("[data-print]")) window.print();
  });

  // <button data-dismiss="#selector">: empties that element (closing a confirmation without a request).
  document.body.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss]");
    if (!button) return;
    var target = document.querySelector(button.getAttribute("data-dismiss"));
    if (target) target.innerHTML = "";
  });
})();
