// envshare console: the live event feed and confirmation prompts. Loaded from the server
// (script-src 'self'); no inline script, no build step. The pages work without it.
(function () {
  "use strict";

  // Buttons and forms with data-confirm ask first.
  document.addEventListener("click", function (ev) {
    var el = ev.target.closest ? ev.target.closest("[data-confirm]") : null;
    if (el && !window.confirm(el.getAttribute("data-confirm"))) {
      ev.preventDefault();
    }
  });

  var feed = document.getElementById("feed");
  if (!feed || !window.EventSource) {
    return;
  }
  var status = document.getElementById("feed-status");
  var MAX = 500;
  var source = new EventSource(feed.getAttribute("data-src"));
  source.onopen = function () {
    feed.setAttribute("data-live", "1");
    if (status) status.textContent = "Live: new events appear at the top.";
  };
  source.onerror = function () {
    feed.setAttribute("data-live", "0");
    if (status) status.textContent = "Reconnecting to the event feed…";
  };
  source.onmessage = function (msg) {
    var type = "event";
    try {
      type = JSON.parse(msg.data).type || type;
    } catch (e) {
      // not JSON: show it as it came
    }
    var li = document.createElement("li");
    li.setAttribute("data-type", type);
    li.className = "new";
    var code = document.createElement("code");
    code.className = "type";
    code.textContent = type;
    var json = document.createElement("span");
    json.className = "json";
    json.textContent = msg.data;
    li.appendChild(code);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(json);
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > MAX) {
      feed.removeChild(feed.lastChild);
    }
  };
})();
