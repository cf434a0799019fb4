// Review of one frame: every stored box confirmed or rejected (with a reason), missed boxes drawn by
// dragging on the image, saved with the reviewer token in a header; keyboard first. Text goes in
// through textContent only (class names and notes are never markup).
(function () {
  "use strict";
  const viewer = document.getElementById("review-viewer");
  if (!viewer) return;
  const SVG = "http://www.w3.org/2000/svg";
  const KEY = "inspection-review-token";
  const frameId = viewer.dataset.frameId;
  const queue = viewer.dataset.queue;
  const overlay = document.getElementById("review-overlay");
  const boxesGroup = document.getElementById("review-boxes");
  const missedGroup = document.getElementById("missed-boxes");
  const dragRect = document.getElementById("drag-rect");
  const list = document.getElementById("review-list");
  const missedList = document.getElementById("missed-list");
  const status = document.getElementById("review-status");
  const decidedCount = document.getElementById("decided-count");
  const rejectReason = document.getElementById("reject-reason");
  const missedClass = document.getElementById("missed-class");
  const missedReason = document.getElementById("missed-reason");
  const note = document.getElementById("review-note");
  let boxes = [];
  let missed = [];
  let selected = 0;
  let drawing = false;
  let dragStart = null;
  let saving = false;

  function rect(parent, xyxy, cls) {
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", cls);
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", xyxy[0]); r.setAttribute("y", xyxy[1]);
    r.setAttribute("width", Math.max(1, xyxy[2] - xyxy[0])); r.setAttribute("height", Math.max(1, xyxy[3] - xyxy[1]));
    g.append(r);
    parent.append(g);
    return g;
  }

  function draw() {
    boxesGroup.replaceChildren();
    list.replaceChildren();
    boxes.forEach((b, i) => {
      const state = b.decision || "undecided";
      const g = rect(boxesGroup, b.xyxy, "rbox " + state + (i === selected ? " sel" : ""));
      g.dataset.detectionId = String(b.detection_id);
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", b.xyxy[0] + 4); label.setAttribute("y", Math.max(40, b.xyxy[1] - 8));
      label.textContent = (i + 1) + " " + b.class_name;
      g.append(label);
      const li = document.createElement("li");
      li.className = state + (i === selected ? " sel" : "");
      li.dataset.detectionId = String(b.detection_id);
      li.textContent = b.class_name + " " + b.score.toFixed(2) + " — " + state + (b.reason_code ? " (" + b.reason_code + ")" : "");
      li.addEventListener("click", () => { selected = i; draw(); });
      list.append(li);
    });
    missedGroup.replaceChildren();
    missedList.replaceChildren();
    missed.forEach((m) => {
      const g = rect(missedGroup, m.xyxy, "missed");
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", m.xyxy[0] + 4); label.setAttribute("y", m.xyxy[3] + 40);
      label.textContent = "missed " + m.class_name;
      g.append(label);
      const li = document.createElement("li");
      li.textContent = m.class_name + " (" + m.reason_code + ") " + m.xyxy.map((v) => Math.round(v)).join(",");
      missedList.append(li);
    });
    const decided = boxes.filter((b) => b.decision).length;
    decidedCount.textContent = decided + " of " + boxes.length + " decided";
    viewer.dataset.decided = String(decided);
  }

  function decide(decision) {
    const b = boxes[selected];
    if (!b) return;
    b.decision = decision;
    b.reason_code = decision === "reject" ? rejectReason.value : null;
    if (selected < boxes.length - 1) selected++;
    draw();
  }

  function framePoint(e) {
    const r = overlay.getBoundingClientRect();
    const w = parseFloat(viewer.dataset.width), h = parseFloat(viewer.dataset.height);
    return [Math.min(w, Math.max(0, (e.clientX - r.left) * w / r.width)), Math.min(h, Math.max(0, (e.clientY - r.top) * h / r.height))];
  }

  function setDrawing(on) {
    drawing = on;
    viewer.classList.toggle("drawing", on);
    status.textContent = on ? "drag a box around the missed object" : status.textContent;
  }

  overlay.addEventListener("mousedown", (e) => { if (!drawing) return; e.preventDefault(); dragStart = framePoint(e); });
  overlay.addEventListener("mousemove", (e) => {
    if (!dragStart) return;
    const p = framePoint(e);
    dragRect.hidden = false;
    dragRect.setAttribute("x", Math.min(dragStart[0], p[0])); dragRect.setAttribute("y", Math.min(dragStart[1], p[1]));
    dragRect.setAttribute("width", Math.abs(p[0] - dragStart[0])); dragRect.setAttribute("height", Math.abs(p[1] - dragStart[1]));
  });
  overlay.addEventListener("mouseup", (e) => {
    if (!dragStart) return;
    const p = framePoint(e);
    const xyxy = [Math.min(dragStart[0], p[0]), Math.min(dragStart[1], p[1]), Math.max(dragStart[0], p[0]), Math.max(dragStart[1], p[1])];
    dragStart = null;
    dragRect.hidden = true;
    if (xyxy[2] - xyxy[0] >= 4 && xyxy[3] - xyxy[1] >= 4) {
      missed.push({ class_name: missedClass.value, xyxy: xyxy, reason_code: missedReason.value });
      status.textContent = missed.length + " missed box(es) drawn";
    }
    setDrawing(false);
    draw();
  });

  async function save() {
    if (saving) return false;
    const token = sessionStorage.getItem(KEY);
    if (!token) { status.textContent = "enter your reviewer token first"; return false; }
    const undecided = boxes.filter((b) => !b.decision).length;
    if (undecided) { status.textContent = "decide every box first (" + undecided + " undecided)"; return false; }
    saving = true;
    try {
      const body = {
        decisions: boxes.map((b) => ({ detection_id: b.detection_id, decision: b.decision, reason_code: b.decision === "reject" ? b.reason_code : null })),
        missed: missed,
        note: note.value || null,
        queue: queue,
      };
      const answer = await fetch("/api/review/frames/" + encodeURIComponent(frameId), {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-Review-Token": token },
        body: JSON.stringify(body),
      });
      const json = await answer.json();
      if (!answer.ok) { status.textContent = "not saved: " + (typeof json.detail === "string" ? json.detail : JSON.stringify(json.detail)); return false; }
      status.textContent = "saved review " + json.review_id;
      viewer.dataset.savedReview = String(json.review_id);
      return true;
    } finally {
      saving = false;
    }
  }

  async function saveAndNext() {
    if (!(await save())) return;
    const answer = await fetch("/api/review/next?after=" + encodeURIComponent(frameId) + "&queue=" + encodeURIComponent(queue), { headers: { Accept: "application/json" } });
    const next = answer.ok ? await answer.json() : null;
    window.location.assign(next ? "/review/frames/" + next.frame_id + "?queue=" + encodeURIComponent(next.queue) : "/review");
  }

  document.getElementById("draw-mode").addEventListener("click", () => setDrawing(!drawing));
  document.getElementById("save-next").addEventListener("click", saveAndNext);
  document.addEventListener("keydown", (e) => {
    const tag = e.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j") { selected = Math.min(boxes.length - 1, selected + 1); draw(); }
    else if (e.key === "k") { selected = Math.max(0, selected - 1); draw(); }
    else if (e.key === "c") decide("confirm");
    else if (e.key === "r") decide("reject");
    else if (e.key === "a") { boxes.forEach((b) => { if (!b.decision) { b.decision = "confirm"; b.reason_code = null; } }); draw(); }
    else if (e.key === "b") setDrawing(!drawing);
    else if (e.key === "x") { missed.pop(); draw(); }
    else if (e.key === "n") saveAndNext();
    else return;
    e.preventDefault();
  });

  // the page carries the frame's boxes and latest review (one request per frame; /api/review/frames/<id> has the same)
  const json = JSON.parse(viewer.dataset.review);
  boxes = json.boxes;
  missed = json.missed.map((m) => ({ class_name: m.class_name, xyxy: m.xyxy, reason_code: m.reason_code }));
  viewer.dataset.loaded = "true";
  status.textContent = boxes.length + " boxes";
  draw();
})();
