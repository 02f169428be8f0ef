// lab serve's script: live updates of a campaign's page, sortable tables, the operator's name remembered between
// forms, and the health page's wait for `lab verify`. Every page works without it, only less conveniently.
"use strict";

// A section being edited (a field focused or typed into) is not replaced until the edit ends, so an update never
// swallows what a person is typing into a form.
function busy(section) {
  return section.contains(document.activeElement) && document.activeElement.matches("input, select, textarea")
    || section.dataset.dirty === "yes";
}

function rememberOperator(root) {
  const saved = localStorage.getItem("lab.operator") || "";
  root.querySelectorAll("input.operator").forEach((input) => {
    if (!input.value) input.value = saved;
  });
}

function followLive(url) {
  const dot = document.getElementById("live-dot");
  const pending = new Map();
  // What each section was last drawn from: a section whose drawing did not change is left alone, so a button is
  // never replaced under a pointer for nothing.
  const drawn = new Map();
  let frames = 0;
  const apply = (id, html) => {
    const el = document.getElementById(id);
    if (!el) return;
    if (busy(el)) {
      pending.set(id, html);
      return;
    }
    if (drawn.get(id) !== html) {
      if (drawn.has(id) || el.innerHTML.trim() !== html.trim()) {
        el.innerHTML = html;
        rememberOperator(el);
        makeSortable(el);
      }
      drawn.set(id, html);
    }
  };
  const source = new EventSource(url);
  source.addEventListener("open", () => dot && dot.classList.add("on"));
  source.addEventListener("error", () => dot && dot.classList.remove("on"));
  source.addEventListener("frame", (event) => {
    const frame = JSON.parse(event.data);
    const hasStock = document.getElementById("live-stock") !== null;
    if (frame.stock !== hasStock) {
      location.reload();
      return;
    }
    for (const [id, html] of Object.entries(frame.sections)) apply(id, html);
    for (const [id, src] of Object.entries(frame.images)) {
      const img = document.getElementById(id);
      if (img && img.getAttribute("src") !== src) img.setAttribute("src", src);
    }
    frames += 1;
    document.body.dataset.frames = String(frames);
    document.body.dataset.version = String(frame.version);
    if (dot) dot.classList.add("on");
  });
  document.addEventListener("input", (e) => {
    const section = e.target.closest(".live");
    if (section) section.dataset.dirty = "yes";
  });
  document.addEventListener("focusout", (e) => {
    const section = e.target.closest(".live");
    if (!section) return;
    // Focus may move to another field of the same form; look once it has settled.
    setTimeout(() => {
      if (section.contains(document.activeElement)) return;
      delete section.dataset.dirty;
      if (pending.has(section.id)) {
        const html = pending.get(section.id);
        pending.delete(section.id);
        apply(section.id, html);
      }
    }, 0);
  });
}

// Tables with class "sortable" sort by a column when its header is clicked (again: the other way). Cells may give
// the value to sort by in data-sort; columns marked data-type="number" sort as numbers.
function makeSortable(root) {
  root.querySelectorAll("table.sortable").forEach((table) => {
    if (table.dataset.sortable === "yes") return;
    table.dataset.sortable = "yes";
    table.querySelectorAll("thead th").forEach((th, column) => {
      th.classList.add("sorter");
      th.title = "sort by " + th.textContent.trim();
      th.addEventListener("click", () => {
        const numeric = th.dataset.type === "number";
        const down = th.dataset.dir !== "asc";
        table.querySelectorAll("thead th").forEach((h) => delete h.dataset.dir);
        th.dataset.dir = down ? "asc" : "desc";
        const body = table.tBodies[0];
        const key = (row) => {
          const cell = row.cells[column];
          const v = cell ? (cell.dataset.sort ?? cell.textContent.trim()) : "";
          return numeric ? parseFloat(v) : v.toLowerCase();
        };
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const order = numeric ? (isNaN(x) ? 1 : isNaN(y) ? -1 : x - y) : x.localeCompare(y);
          return down ? order : -order;
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  });
}

function waitForVerify() {
  const box = document.getElementById("verify");
  if (!box) return;
  const poll = () => {
    if (box.querySelector("[data-done='yes']")) return;
    fetch(box.dataset.src, { credentials: "same-origin" })
      .then((r) => r.text())
      .then((html) => {
        box.innerHTML = html;
        setTimeout(poll, 1000);
      })
      .catch(() => setTimeout(poll, 3000));
  };
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  rememberOperator(document);
  makeSortable(document);
  document.addEventListener("submit", (e) => {
    const who = e.target.querySelector("input.operator");
    if (who && who.value) localStorage.setItem("lab.operator", who.value);
    const section = e.target.closest(".live");
    if (section) delete section.dataset.dirty;
  });
  const live = document.body.dataset.live;
  if (live) followLive(live);
  waitForVerify();
});
