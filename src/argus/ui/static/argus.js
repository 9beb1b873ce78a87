/* argus web UI: copy buttons, confirmations, live refresh, the "try it" box, task logs.
   Plain JavaScript, no dependencies, no build step. Written for argus (Apache-2.0). */
(function () {
  "use strict";

  // -- copy buttons: <button data-copy-target="id"> copies that element's text ------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http on a LAN address is not a secure context: fall back to a selection.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) { return; }
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    copyText(source.textContent).then(
      function () { button.textContent = "Copied"; button.classList.add("copied"); },
      function () { button.textContent = "Select and copy"; }
    ).then(function () {
      setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 1500);
    });
  });

  // -- forms that ask first: <form data-confirm="..."> ------------------------------
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  // -- live refresh: while <body data-refresh="ms">, re-fetch the page and swap every
  //    [data-live] region by id; a region holding the focus waits for the next round.
  function scheduleRefresh() {
    var ms = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
    if (ms > 0) { setTimeout(refresh, ms); }
  }

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected && response.url.indexOf("/ui/login") !== -1) {
          window.location.reload();  // the session ended: show the login form
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) { scheduleRefresh(); return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (region) {
          var next = fresh.getElementById(region.id);
          if (next && !region.contains(document.activeElement)) {
            region.replaceWith(document.importNode(next, true));
          }
        });
        var ms = fresh.body.getAttribute("data-refresh");
        if (ms) { document.body.setAttribute("data-refresh", ms); }
        else { document.body.removeAttribute("data-refresh"); }
        scheduleRefresh();
      })
      .catch(function () { scheduleRefresh(); });
  }

  // -- "try it": send one message, show the answer or the reason ---------------------
  function setupTry(form) {
    var output = document.getElementById("try-output");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      output.hidden = false;
      output.className = "try-output waiting";
      output.textContent = "Waiting for the model…";
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        body: new URLSearchParams(new FormData(form)),
        headers: { "Accept": "application/json" }
      })
        .then(function (response) {
          var type = response.headers.get("content-type") || "";
          if (type.indexOf("application/json") === -1) {
            return { ok: false, error: "refused (HTTP " + response.status + "); reload the page" };
          }
          return response.json();
        })
        .then(function (body) {
          output.className = "try-output " + (body.ok ? "answer" : "failed");
          output.textContent = body.ok ? body.answer : body.error;
        })
        .catch(function (err) {
          output.className = "try-output failed";
          output.textContent = "could not send the message: " + err;
        })
        .then(function () { button.disabled = false; });
    });
  }

  // -- a task's log: while <pre data-follow>, fetch what the file gained since
  //    data-offset and append it; stop once the server says the task finished and
  //    everything is read. The page's other regions follow the task by live refresh.
  var LOG_MS = 1000;
  var LOG_KEEP_CHARS = 1000000;  // a long log keeps its newest part on the page

  function setupLog(pre) {
    var url = pre.getAttribute("data-log-url");
    var offset = parseInt(pre.getAttribute("data-offset") || "0", 10);
    var text = pre.querySelector("code") || pre;
    var status = document.getElementById("log-status");

    function append(chunk) {
      var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      text.appendChild(document.createTextNode(chunk));
      if (text.textContent.length > LOG_KEEP_CHARS) {
        text.textContent = text.textContent.slice(-LOG_KEEP_CHARS);
      }
      if (atBottom) { pre.scrollTop = pre.scrollHeight; }
    }

    function poll() {
      fetch(url + "?offset=" + offset, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Accept": "application/json" }
      })
        .then(function (response) {
          if (response.redirected && response.url.indexOf("/ui/login") !== -1) {
            window.location.reload();  // the session ended: show the login form
            return null;
          }
          return response.ok ? response.json() : { retry: true };
        })
        .then(function (body) {
          if (body === null) { return; }
          if (body.retry) { setTimeout(poll, LOG_MS * 3); return; }
          if (body.text) { append(body.text); }
          offset = body.offset;
          pre.setAttribute("data-offset", String(offset));
          if (body.done) {
            pre.removeAttribute("data-follow");
            if (status) { status.textContent = "The task has finished."; }
            return;
          }
          setTimeout(poll, body.text ? LOG_MS / 4 : LOG_MS);  // more may be waiting
        })
        .catch(function () { setTimeout(poll, LOG_MS * 3); });
    }

    pre.scrollTop = pre.scrollHeight;
    if (pre.hasAttribute("data-follow")) { setTimeout(poll, LOG_MS); }
  }

  // -- the spec editor: Tab indents instead of leaving the field ---------------------
  function setupEditor(area) {
    area.addEventListener("keydown", function (event) {
      if (event.key !== "Tab" || event.shiftKey || event.ctrlKey || event.altKey) { return; }
      event.preventDefault();
      var start = area.selectionStart;
      area.setRangeText("  ", start, area.selectionEnd, "end");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var replace = document.body.getAttribute("data-replace-url");
    if (replace && window.history.replaceState) {
      window.history.replaceState(null, "", replace);  // a reload must not post again
    }
    document.querySelectorAll("form[data-try]").forEach(setupTry);
    document.querySelectorAll("pre[data-log-url]").forEach(setupLog);
    var spec = document.getElementById("spec");
    if (spec) { setupEditor(spec); }
    scheduleRefresh();
  });
})();
