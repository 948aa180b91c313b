/* envfactory report: filters and pages over the trajectory index, and pan/zoom/highlight on the
   tool graph. No libraries, nothing fetched: the index arrives as data/index.js. */
(function () {
  "use strict";
  var PAGE = 50;

  function text(el, s) { el.textContent = s; return el; }
  function cell(tr, s, cls) { var td = document.createElement("td"); if (cls) td.className = cls; text(td, s); tr.appendChild(td); return td; }
  function fmt(v) { return v === null || v === undefined ? "–" : Number(v).toFixed(2); }

  function readHash() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return; var i = kv.indexOf("="); out[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }

  function trajectories(rows) {
    var form = document.getElementById("filters"), body = document.querySelector("#results tbody");
    var count = document.getElementById("count"), pager = document.getElementById("pager"), page = 0, shown = rows;
    var tiers = {}; rows.forEach(function (r) { tiers[r.tier] = true; });
    Object.keys(tiers).sort().forEach(function (t) { var o = document.createElement("option"); text(o, t); form.tier.appendChild(o); });
    var given = readHash();
    ["env", "status", "tier", "q", "min", "max"].forEach(function (k) { if (given[k] !== undefined && form[k]) form[k].value = given[k]; });
    var reason = given.reason;

    function matches(r) {
      var q = form.q.value.trim().toLowerCase(), lo = parseFloat(form.min.value), hi = parseFloat(form.max.value);
      if (form.env.value && r.envs.indexOf(form.env.value) < 0) return false;
      if (form.status.value && r.status !== form.status.value) return false;
      if (form.tier.value && r.tier !== form.tier.value) return false;
      if (reason !== undefined && r.reason !== reason) return false;
      var s = r.score === null ? 0 : r.score;
      if (!isNaN(lo) && s < lo) return false;
      if (!isNaN(hi) && s > hi) return false;
      if (q && (r.key + " " + r.query + " " + r.reason + " " + r.envs.join(" ") + " " + r.rollout).toLowerCase().indexOf(q) < 0) return false;
      return true;
    }
    function render() {
      body.textContent = "";
      var start = page * PAGE, slice = shown.slice(start, start + PAGE);
      slice.forEach(function (r) {
        var tr = document.createElement("tr"), td = document.createElement("td"), a = document.createElement("a");
        a.href = "t/" + r.key + ".html"; text(a, r.key); td.appendChild(a); tr.appendChild(td);
        cell(tr, r.envs.join(" + "));
        var st = cell(tr, r.status + (r.reason ? ": " + r.reason : "")); st.className = r.status === "accepted" ? "pass" : "fail";
        cell(tr, fmt(r.score), "num"); cell(tr, fmt(r.T), "num"); cell(tr, fmt(r.S), "num"); cell(tr, fmt(r.pass_rate), "num");
        cell(tr, r.tier); cell(tr, r.query);
        body.appendChild(tr);
      });
      var pages = Math.max(1, Math.ceil(shown.length / PAGE));
      text(count, shown.length + " of " + rows.length + " trajectories");
      text(pager.querySelector("span"), "page " + (page + 1) + " of " + pages);
      pager.querySelector("[data-step='-1']").disabled = page === 0;
      pager.querySelector("[data-step='1']").disabled = page >= pages - 1;
    }
    function refilter() { shown = rows.filter(matches); page = 0; render(); }
    form.addEventListener("input", function () { reason = undefined; refilter(); });
    pager.addEventListener("click", function (ev) {
      var step = ev.target.getAttribute && ev.target.getAttribute("data-step");
      if (step) { page += parseInt(step, 10); render(); }
    });
    refilter();
  }

  function graph(box) {
    var svg = box.querySelector("svg"); if (!svg) return;
    var vb = svg.viewBox.baseVal, home = [vb.x, vb.y, vb.width, vb.height], drag = null;
    function set(x, y, w, h) { svg.setAttribute("viewBox", [x, y, w, h].join(" ")); }
    box.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var k = ev.deltaY > 0 ? 1.15 : 1 / 1.15, r = svg.getBoundingClientRect();
      var px = vb.x + (ev.clientX - r.left) / r.width * vb.width, py = vb.y + (ev.clientY - r.top) / r.height * vb.height;
      set(px - (px - vb.x) * k, py - (py - vb.y) * k, vb.width * k, vb.height * k);
    }, { passive: false });
    box.addEventListener("mousedown", function (ev) { drag = [ev.clientX, ev.clientY, vb.x, vb.y]; });
    window.addEventListener("mouseup", function () { drag = null; });
    box.addEventListener("mousemove", function (ev) {
      if (!drag) return; var r = svg.getBoundingClientRect();
      set(drag[2] - (ev.clientX - drag[0]) * vb.width / r.width, drag[3] - (ev.clientY - drag[1]) * vb.height / r.height, vb.width, vb.height);
    });
    box.addEventListener("dblclick", function () { set.apply(null, home); });
    // start at 1:1 (labels at their real size) when the whole graph would have to shrink to fit
    box.style.height = Math.max(240, Math.min(window.innerHeight * 0.75, home[3] + 16)) + "px";
    var r0 = box.getBoundingClientRect();
    if (r0.width > 0 && (home[2] > r0.width || home[3] > r0.height)) {
      set(home[0], home[1] + (home[3] - r0.height) / 2, r0.width, r0.height);
    }
    var toggle = document.getElementById("show-proposed");
    if (toggle) toggle.addEventListener("change", function () { box.classList.toggle("hide-proposed", !toggle.checked); });
    svg.querySelectorAll("g.node").forEach(function (node) {
      var name = node.getAttribute("data-node");
      node.addEventListener("mouseenter", function () {
        svg.querySelectorAll("g.edge").forEach(function (e) {
          var on = e.getAttribute("data-from") === name || e.getAttribute("data-to") === name;
          e.classList.toggle("dim", !on); e.classList.toggle("hot", on);
        });
      });
      node.addEventListener("mouseleave", function () {
        svg.querySelectorAll("g.edge").forEach(function (e) { e.classList.remove("dim"); e.classList.remove("hot"); });
      });
    });
  }

  window.EnvfactoryReport = { trajectories: trajectories };
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".graph").forEach(graph);
  });
})();
