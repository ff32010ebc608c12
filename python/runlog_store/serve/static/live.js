// The page of a run still being written follows it: the server sends the run's state as
// server-sent events whenever it changes; this updates the status, the progress of map steps
// and the latest failure in place. Everything is set as text, never as HTML: the strings
// come from the run.
(function () {
  "use strict";
  var body = document.body;
  if (body.dataset.live !== "true") {
    return;
  }
  // The run's id as in a URL path (percent-encoded by the server).
  var base = "/runs/" + body.dataset.runPath;
  var statusClasses = ["SUCCESS", "FAIL", "PROCESSING", "CREATED", "TRIGGERED", "UNREADABLE"];

  function statusClass(status) {
    return "status-" + (statusClasses.indexOf(status) >= 0 ? status : "other");
  }

  function setStatus(element, status) {
    element.className = element.className.replace(/\bstatus-\S+/g, "").trim() + " " + statusClass(status);
    element.textContent = status;
  }

  function byData(selector, name, value) {
    var found = [];
    document.querySelectorAll(selector).forEach(function (element) {
      if (element.getAttribute(name) === value) {
        found.push(element);
      }
    });
    return found;
  }

  // Steps the page does not draw yet (a step started since it was loaded, a map's first
  // branch): the tree is fetched again, once at a time, and the state applied to it.
  var fetching = false;
  var latest = null;

  function missing(state) {
    return state.steps.some(function (step) {
      if (!byData("details.step", "data-step", step.name).length) {
        return true;
      }
      return step.progress !== null && !byData("div.progress", "data-step", step.name).length;
    });
  }

  function redraw(then) {
    fetching = true;
    fetch(base + "/fragment/steps", { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          // The server's own page, escaped by its templates as the whole page was.
          document.getElementById("steps-tree").innerHTML = html;
        }
      })
      .catch(function () {})
      .finally(function () {
        fetching = false;
        then();
      });
  }

  function update(state) {
    latest = state;
    if (missing(state) && !fetching) {
      redraw(function () {
        if (latest) {
          apply(latest);
        }
      });
    }
    apply(state);
  }

  function apply(state) {
    setStatus(document.getElementById("run-status"), state.status);
    state.steps.forEach(function (step) {
      byData("details.step", "data-step", step.name).forEach(function (details) {
        details.setAttribute("data-status", step.status);
        var mark = details.querySelector(":scope > summary > .status");
        if (mark) {
          setStatus(mark, step.status);
        }
        if (step.branches_text) {
          details
            .querySelectorAll(":scope > summary > .branch-counts, :scope > .step-body > details.branches > summary")
            .forEach(function (counts) {
              counts.textContent = step.branches_text;
            });
        }
      });
      if (step.progress) {
        byData("div.progress", "data-step", step.name).forEach(function (box) {
          ["done", "running", "failed", "total"].forEach(function (key) {
            box.setAttribute("data-" + key, String(step.progress[key]));
          });
          var bar = box.querySelector("progress");
          if (bar) {
            bar.max = Math.max(step.progress.total, 1);
            bar.value = step.progress.done;
          }
          var text = box.querySelector(".progress-text");
          if (text) {
            text.textContent = step.progress_text;
          }
        });
      }
    });
    var failure = document.getElementById("latest-failure");
    failure.textContent = "";
    if (state.latest_failure) {
      var line = document.createElement("p");
      var strong = document.createElement("strong");
      strong.textContent = "Latest failure";
      var name = document.createElement("span");
      name.className = "mono";
      name.textContent = state.latest_failure.step;
      line.append(strong, " in ", name, ":");
      var message = document.createElement("pre");
      message.className = "error-text";
      message.textContent = state.latest_failure.message;
      failure.append(line, message);
    }
  }

  function settle() {
    // The whole page as it ended (summary, attempts, parameters, metrics, catalog, timeline),
    // fetched and swapped in for the live one: the page settles without a reload. The server's
    // own page, escaped by its templates; a parsed document runs no script.
    var swapped = false;
    // A page that does not come within half a minute is not waited for: the page settles as
    // it is, with a link to the full one.
    var giveUp = new AbortController();
    setTimeout(function () {
      giveUp.abort();
    }, 30000);
    fetch(base, { credentials: "same-origin", signal: giveUp.signal })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var ended = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        if (ended) {
          document.getElementById("main").replaceWith(document.adoptNode(ended));
          swapped = true;
          if (window.runlogDrawTimeline) {
            window.runlogDrawTimeline();
          }
        }
      })
      .catch(function () {})
      .finally(function () {
        var note = document.getElementById("live-note");
        if (swapped) {
          note.textContent = "The run ended: the page shows it as it ended.";
        } else {
          note.textContent = "The run ended. ";
          var again = document.createElement("a");
          again.href = base;
          again.textContent = "Reload for the full page";
          note.append(again);
        }
        body.dataset.settled = "true";
      });
  }

  // The browser's EventSource reconnects by itself after a dropped stream, but gives up for
  // good when a reconnection is answered with anything but a stream (an error page while the
  // run was being folded, say): then a new one is made after a pause, until the run ends.
  var ended = false;

  function connect() {
    var source = new EventSource(base + "/events");
    source.addEventListener("state", function (event) {
      var state = JSON.parse(event.data);
      update(state);
      if (state.ended && !ended) {
        ended = true;
        source.close();
        body.dataset.live = "false";
        settle();
      }
    });
    source.addEventListener("error", function () {
      if (!ended && source.readyState === EventSource.CLOSED) {
        setTimeout(connect, 2000);
      }
    });
  }

  connect();
})();
