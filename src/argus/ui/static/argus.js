/* argus web UI: copy buttons, confirmations, live refresh, the playground, task logs.
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

  // -- the playground: send one message, stream the answer in, then show its usage and
  //    the settings it was sent with. The server answers newline-delimited JSON events
  //    ({"settings"}, {"delta"}..., {"done", "usage"} or {"error"}), or one JSON refusal.
  function usageLine(settings, done) {
    var parts = [];
    if (done.usage) {
      parts.push(done.usage.prompt_tokens + " prompt + " + done.usage.completion_tokens +
                 " completion tokens");
    }
    if (settings) {
      parts.push("temperature " + settings.temperature);
      parts.push("max tokens " + settings.max_tokens);
      if (settings.system) { parts.push("with a system prompt"); }
    }
    if (done.finish_reason) { parts.push("finished: " + done.finish_reason); }
    if (done.seconds !== undefined) { parts.push(done.seconds + " s"); }
    return parts.join(" · ");
  }

  function setupTry(form) {
    var output = document.getElementById("try-output");
    var usage = document.getElementById("try-usage");
    var button = form.querySelector("button[type=submit]");
    function fail(message) {
      output.className = "try-output failed";
      output.textContent = message;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      output.hidden = false;
      usage.hidden = true;
      usage.textContent = "";
      output.className = "try-output waiting";
      output.textContent = "Waiting for the model…";
      var settings = null;
      var text = "";
      var finished = false;
      function handle(event) {
        if (event.settings) { settings = event.settings; return; }
        if (event.delta !== undefined) {
          text += event.delta;
          output.className = "try-output streaming";
          output.textContent = text;
          return;
        }
        if (event.error) { finished = true; fail(event.error); return; }
        if (event.done) {
          finished = true;
          output.className = "try-output answer";
          output.textContent = text;
          usage.textContent = usageLine(settings, event);
          usage.hidden = false;
        }
      }
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        body: new URLSearchParams(new FormData(form)),
        headers: { "Accept": "application/x-ndjson, application/json" }
      })
        .then(function (response) {
          var type = response.headers.get("content-type") || "";
          if (type.indexOf("application/x-ndjson") === 0 && response.body) {
            var reader = response.body.getReader();
            var decoder = new TextDecoder();
            var pending = "";
            var pump = function () {
              return reader.read().then(function (step) {
                pending += decoder.decode(step.value || new Uint8Array(), { stream: !step.done });
                var lines = pending.split("\n");
                pending = lines.pop();
                lines.forEach(function (line) { if (line) { handle(JSON.parse(line)); } });
                if (step.done) {
                  if (pending) { handle(JSON.parse(pending)); }
                  if (!finished) { fail("the answer broke off; try again"); }
                  return;
                }
                return pump();
              });
            };
            return pump();
          }
          if (type.indexOf("application/json") === -1) {
            fail("refused (HTTP " + response.status + "); reload the page");
            return;
          }
          return response.json().then(function (body) { fail(body.error); });
        })
        .catch(function (err) { fail("could not send the message: " + err); })
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
