// Flask-Admin behaviours that its templates wire with inline handlers, which the CSP forbids.
(function () {
  "use strict";

  // Destructive buttons confirm first: <button data-confirm="Delete this record?">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  // Bulk actions in the "With selected" menu: <a data-admin-action="deactivate">.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-admin-action]");
    if (!link) {
      return;
    }
    event.preventDefault();
    if (window.modelActions) {
      window.modelActions.execute(link.getAttribute("data-admin-action"));
    }
  });

  // Menu toggles and filter names are handled by Bootstrap and Flask-Admin's scripts; their
  // javascript: hrefs must not navigate (the CSP refuses it). Capture runs before Bootstrap
  // stops the click from bubbling.
  document.addEventListener("click", function (event) {
    if (event.target.closest("a.filter, a[href='javascript:void(0)']")) {
      event.preventDefault();
    }
  }, true);

  // select2 draws each chosen value's remove button as an empty link: give it a name screen readers say.
  function nameRemoveButtons(root) {
    root.querySelectorAll(".select2-search-choice-close:not([aria-label])").forEach(function (link) {
      var choice = link.parentElement ? link.parentElement.textContent.trim() : "";
      link.setAttribute("aria-label", choice ? "Remove " + choice : "Remove");
    });
  }
  nameRemoveButtons(document);
  new MutationObserver(function () { nameRemoveButtons(document); })
    .observe(document.body, { childList: true, subtree: true });
})();
