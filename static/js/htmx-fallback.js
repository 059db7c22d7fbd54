// Loads the vendored copy of htmx when the pinned CDN copy did not arrive (offline, blocked).
(function () {
  if (window.htmx) return;
  var me = document.currentScript;
  document.write('<script src="' + me.getAttribute("data-src") + '"><\/script>');
})();
