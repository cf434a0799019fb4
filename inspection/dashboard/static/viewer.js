// Frame viewer: boxes from /api/frames/<id>/detections drawn as SVG over the image; the score
// slider and class filter redraw without a reload; zoom; optional tile grid. Text goes in through
// textContent only (a class name is never markup).
(function () {
  "use strict";
  const viewer = document.getElementById("viewer");
  if (!viewer) return;
  const SVG = "http://www.w3.org/2000/svg";
  const frameId = viewer.dataset.frameId;
  const tileSize = parseInt(viewer.dataset.tileSize, 10);
  const tiles = JSON.parse(viewer.dataset.tiles);
  const boxesGroup = document.getElementById("boxes");
  const tilesGroup = document.getElementById("tiles");
  const slider = document.getElementById("min-score");
  const sliderValue = document.getElementById("min-score-value");
  const classFilter = document.getElementById("class-filter");
  const countText = document.getElementById("box-count");
  const stage = document.getElementById("stage");
  const zoomLevel = document.getElementById("zoom-level");
  let data = null;
  let zoom = 1;

  function colour(name) {
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
    return "hsl(" + h + ", 85%, 55%)";
  }

  function draw() {
    if (!data) return;
    const minScore = parseFloat(slider.value);
    const only = classFilter.value;
    sliderValue.textContent = minScore.toFixed(2);
    boxesGroup.replaceChildren();
    let shown = 0;
    for (let i = 0; i < data.score.length; i++) {
      const name = data.class_name[i];
      if (data.score[i] < minScore || (only && name !== only)) continue;
      const [x1, y1, x2, y2] = data.xyxy[i];
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("class", "box");
      g.dataset.className = name;
      g.dataset.score = String(data.score[i]);
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", x1); rect.setAttribute("y", y1);
      rect.setAttribute("width", Math.max(1, x2 - x1)); rect.setAttribute("height", Math.max(1, y2 - y1));
      rect.setAttribute("stroke", colour(name));
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", x1 + 4); label.setAttribute("y", Math.max(28, y1 - 6));
      label.textContent = name + " " + data.score[i].toFixed(2);
      const title = document.createElementNS(SVG, "title");
      title.textContent = name + " " + data.score[i].toFixed(3);
      g.append(rect, label, title);
      boxesGroup.append(g);
      shown++;
    }
    countText.textContent = shown + " of " + data.score.length + " boxes shown";
  }

  function drawTiles() {
    const width = parseInt(viewer.dataset.width, 10), height = parseInt(viewer.dataset.height, 10);
    for (const [x, y] of tiles) {
      for (const [ax, ay, bx, by] of [[x, y, x + tileSize, y], [x, y, x, y + tileSize],
                                      [x + tileSize, y, x + tileSize, y + tileSize], [x, y + tileSize, x + tileSize, y + tileSize]]) {
        const line = document.createElementNS(SVG, "line");
        line.setAttribute("x1", Math.min(ax, width)); line.setAttribute("y1", Math.min(ay, height));
        line.setAttribute("x2", Math.min(bx, width)); line.setAttribute("y2", Math.min(by, height));
        tilesGroup.append(line);
      }
    }
  }

  function setZoom(z) {
    zoom = Math.min(8, Math.max(1, z));
    stage.style.width = (100 * zoom) + "%";
    zoomLevel.textContent = Math.round(100 * zoom) + " %";
  }

  slider.addEventListener("input", draw);
  classFilter.addEventListener("change", draw);
  document.getElementById("show-tiles").addEventListener("change", (e) => { tilesGroup.hidden = !e.target.checked; });
  document.getElementById("zoom-in").addEventListener("click", () => setZoom(zoom * 1.5));
  document.getElementById("zoom-out").addEventListener("click", () => setZoom(zoom / 1.5));
  document.getElementById("zoom-fit").addEventListener("click", () => setZoom(1));
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "+" || e.key === "=") setZoom(zoom * 1.5);
    else if (e.key === "-") setZoom(zoom / 1.5);
    else if (e.key === "0") setZoom(1);
  });
  drawTiles();

  // Inspection defects: a box the rules kept is outlined with the rule that fired; one an ignore
  // region removed is drawn dimmed with the region's name.
  function drawDefects(d) {
    const group = document.getElementById("defects");
    let kept = 0;
    for (let i = 0; i < d.kept.length; i++) {
      const [x1, y1, x2, y2] = d.xyxy[i];
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("class", d.kept[i] ? "defect" : "defect ignored");
      g.dataset.rule = d.rule[i];
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", x1); rect.setAttribute("y", y1);
      rect.setAttribute("width", Math.max(1, x2 - x1)); rect.setAttribute("height", Math.max(1, y2 - y1));
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", x1 + 4); label.setAttribute("y", y2 + 30);
      label.textContent = (d.kept[i] ? "DEFECT " : "ignored: ") + d.rule[i];
      const title = document.createElementNS(SVG, "title");
      title.textContent = d.class_name[i] + " " + d.score[i].toFixed(3) + " — " + label.textContent;
      g.append(rect, label, title);
      group.append(g);
      if (d.kept[i]) kept++;
    }
    document.getElementById("defect-count").textContent =
      d.kept.length ? kept + " defect(s), " + (d.kept.length - kept) + " ignored by a mask" : "";
  }

  fetch("/api/frames/" + encodeURIComponent(frameId) + "/defects", { headers: { Accept: "application/json" } })
    .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then((json) => { drawDefects(json); viewer.dataset.defectsLoaded = "true"; })
    .catch(() => { document.getElementById("defect-count").textContent = "defects could not be loaded"; });

  fetch("/api/frames/" + encodeURIComponent(frameId) + "/detections", { headers: { Accept: "application/json" } })
    .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then((json) => {
      data = json;
      const names = Array.from(new Set(json.class_name)).sort();
      for (const name of names) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        classFilter.append(option);
      }
      viewer.dataset.loaded = "true";
      draw();
    })
    .catch((err) => { countText.textContent = "boxes could not be loaded: " + err.message; });
})();
