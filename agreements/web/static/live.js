// Small live parts of the pages; every page works without them.
// - The drafting form: the plan beside it follows what is typed, and the lists of parties
//   follow the parties' names.
// - The agreement page: the outbox shows emails going out without a reload.
(function () {
  "use strict";

  function replace(target, html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    target.replaceChildren(template.content);
  }

  var form = document.getElementById("draft-form");
  if (form && form.dataset.livePlan) {
    var plan = document.getElementById("plan");
    var timer = null;
    var asked = 0;
    var names = function () {
      form.querySelectorAll("[data-party-name]").forEach(function (input) {
        var row = input.dataset.partyName;
        form.querySelectorAll("select[data-parties] option[value='" + row + "']").forEach(
          function (option) {
            if (input.value.trim()) { option.textContent = input.value.trim(); }
          });
      });
    };
    var update = function () {
      var mine = ++asked;
      var data = new FormData(form);
      data.delete("upload");  // files go up with the buttons, not with every pause in typing
      fetch(form.dataset.livePlan, {method: "POST", body: data,
                                    credentials: "same-origin"})
        .then(function (answer) { return answer.ok ? answer.text() : null; })
        .then(function (html) { if (html !== null && mine === asked) { replace(plan, html); } })
        .catch(function () { /* the button still shows the plan */ });
    };
    var soon = function () {
      names();
      clearTimeout(timer);
      timer = setTimeout(update, 700);
    };
    form.addEventListener("input", soon);
    form.addEventListener("change", soon);
  }

  var outbox = document.querySelector("[data-live-outbox]");
  if (outbox) {
    // Every 5 s for the first minute after the page comes (the emails an action has just
    // caused appear), then while some are still going out; for ten minutes at most.
    var rounds = 0;
    var look = function () {
      rounds += 1;
      if (rounds > 120 || (rounds > 12 && !outbox.querySelector("[data-pending]"))) { return; }
      fetch(outbox.dataset.liveOutbox, {credentials: "same-origin"})
        .then(function (answer) { return answer.ok ? answer.text() : null; })
        .then(function (html) {
          if (html !== null) { replace(outbox, html); }
          setTimeout(look, 5000);
        })
        .catch(function () { setTimeout(look, 15000); });
    };
    setTimeout(look, 5000);
  }
  var problems = document.getElementById("problems");
  if (problems) { problems.focus(); }
}());
