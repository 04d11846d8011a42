// The Embedding map's scatter: one <canvas>, no chart library (why: dashboard/embedding_map.py).
//
// Python sends the points already coloured (an index into `palette` per point), the kept selection and a
// hover text per point. The component reports two state values: `selection` (the rows of a dragged box, a
// clicked point, shift-click to add or remove, double-click to clear) and `thumbnails`, the key of the
// thumbnail atlas it holds ("" for none). Python sends the atlas only while that key differs from the
// current one, so it never delays the first drawing and is not sent again with every later click.

const RADIUS = 3;
const SELECTED_RADIUS = 5.5;
const HIT_PX = 8; // how near the pointer a point must be to be hovered or clicked
const DRAG_PX = 4; // a press that moves further is a box, not a click
const PAD = 14;

function child(parent, tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  parent.appendChild(node);
  return node;
}

function build(parentElement) {
  const root = child(parentElement, "div", "clipmem-map");
  const view = {
    root,
    legend: child(root, "div", "clipmem-map-legend"),
    stage: child(root, "div", "clipmem-map-stage"),
    asked: false,
    press: null,
  };
  view.canvas = child(view.stage, "canvas");
  view.box = child(view.stage, "div", "clipmem-map-box");
  view.tip = child(view.stage, "div", "clipmem-map-tip");
  view.thumb = child(view.tip, "div", "clipmem-map-thumb");
  view.tipText = child(view.tip, "div", "clipmem-map-tip-text");
  listen(view);
  new ResizeObserver(() => draw(view)).observe(view.stage);
  return view;
}

// Screen positions of every point, recomputed when the data or the width change.
function layout(view) {
  const { x, y } = view.data;
  const width = view.stage.clientWidth;
  const height = view.data.height;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i] === null || y[i] === null) continue;
    x0 = Math.min(x0, x[i]); x1 = Math.max(x1, x[i]);
    y0 = Math.min(y0, y[i]); y1 = Math.max(y1, y[i]);
  }
  const sx = (width - 2 * PAD) / ((x1 - x0) || 1);
  const sy = (height - 2 * PAD) / ((y1 - y0) || 1);
  const px = new Float32Array(x.length).fill(NaN);
  const py = new Float32Array(x.length).fill(NaN);
  for (let i = 0; i < x.length; i++) {
    if (x[i] === null || y[i] === null) continue;
    px[i] = PAD + (x[i] - x0) * sx;
    py[i] = height - PAD - (y[i] - y0) * sy;
  }
  return { width, height, px, py };
}

function draw(view) {
  if (!view.data) return;
  const { palette, colour, selected } = view.data;
  const geometry = layout(view);
  view.geometry = geometry;
  const ratio = window.devicePixelRatio || 1;
  const canvas = view.canvas;
  canvas.width = Math.round(geometry.width * ratio);
  canvas.height = Math.round(geometry.height * ratio);
  canvas.style.width = geometry.width + "px";
  canvas.style.height = geometry.height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, geometry.width, geometry.height);
  const chosen = new Set(selected);
  const { px, py } = geometry;
  const rows = view.data.row;
  // unselected first, faded when something is selected; the selection on top, larger
  // a faint rim, so that the gradient's pale middle still shows on a white page
  ctx.globalAlpha = chosen.size ? 0.3 : 0.9;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.3)";
  ctx.lineWidth = 0.5;
  for (let i = 0; i < px.length; i++) {
    if (Number.isNaN(px[i]) || chosen.has(rows[i])) continue;
    ctx.fillStyle = palette[colour[i]];
    ctx.beginPath();
    ctx.arc(px[i], py[i], RADIUS, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  }
  ctx.globalAlpha = 0.95;
  ctx.strokeStyle = "#111";
  ctx.lineWidth = 1;
  for (let i = 0; i < px.length; i++) {
    if (Number.isNaN(px[i]) || !chosen.has(rows[i])) continue;
    ctx.fillStyle = palette[colour[i]];
    ctx.beginPath();
    ctx.arc(px[i], py[i], SELECTED_RADIUS, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  }
  canvas.dataset.drawn = String(px.length);
}

function drawLegend(view) {
  const legend = view.data.legend;
  view.legend.replaceChildren();
  child(view.legend, "span", "clipmem-map-legend-title").textContent = legend.title;
  const item = (colour, label) => {
    const entry = child(view.legend, "span", "clipmem-map-legend-item");
    child(entry, "span", "clipmem-map-swatch").style.background = colour;
    child(entry, "span").textContent = label;
  };
  if (legend.kind === "gradient") {
    child(view.legend, "span").textContent = legend.low;
    const bar = child(view.legend, "span", "clipmem-map-gradient");
    bar.style.background = `linear-gradient(to right, ${legend.colours.join(", ")})`;
    child(view.legend, "span").textContent = legend.high;
    if (legend.missing) item(legend.missing, "no value");
  } else {
    for (const [label, colour] of legend.items) item(colour, label);
  }
}

function nearest(view, mx, my) {
  const { px, py } = view.geometry;
  let best = -1, bestDistance = HIT_PX * HIT_PX;
  for (let i = 0; i < px.length; i++) {
    const dx = px[i] - mx, dy = py[i] - my;
    const distance = dx * dx + dy * dy;
    if (distance <= bestDistance) { best = i; bestDistance = distance; }
  }
  return best;
}

function inside(view, a, b) {
  const [x0, x1] = [Math.min(a.x, b.x), Math.max(a.x, b.x)];
  const [y0, y1] = [Math.min(a.y, b.y), Math.max(a.y, b.y)];
  const { px, py } = view.geometry;
  const rows = [];
  for (let i = 0; i < px.length; i++) {
    if (px[i] >= x0 && px[i] <= x1 && py[i] >= y0 && py[i] <= y1) rows.push(view.data.row[i]);
  }
  return rows;
}

function select(view, rows) {
  const sorted = [...new Set(rows)].sort((a, b) => a - b);
  view.data = { ...view.data, selected: sorted };
  draw(view);
  view.setStateValue("selection", sorted);
}

function showTip(view, i, mx, my) {
  if (i < 0) { view.tip.style.display = "none"; return; }
  view.tipText.textContent = view.data.tip[i];
  const atlas = view.atlasKey === view.data.atlas_key ? view.atlas : null; // the thumbnails of these points
  if (atlas) {
    const cell = atlas.cell;
    view.thumb.style.display = "block";
    view.thumb.style.backgroundPosition = `-${(i % atlas.columns) * cell}px -${Math.floor(i / atlas.columns) * cell}px`;
    view.thumb.style.width = view.thumb.style.height = cell + "px";
  } else {
    view.thumb.style.display = "none";
  }
  view.tip.style.display = "flex";
  const right = mx + 16 + view.tip.offsetWidth > view.geometry.width;
  view.tip.style.left = (right ? mx - 16 - view.tip.offsetWidth : mx + 16) + "px";
  // below the pointer, or above it where the tip would leave the canvas or the window
  const visibleBottom = Math.min(view.geometry.height, window.innerHeight - view.canvas.getBoundingClientRect().top);
  const below = my + 16 + view.tip.offsetHeight <= visibleBottom;
  view.tip.style.top = Math.max(0, below ? my + 16 : my - 16 - view.tip.offsetHeight) + "px";
}

function listen(view) {
  const canvas = view.canvas;
  const at = (event) => {
    const bounds = canvas.getBoundingClientRect();
    return { x: event.clientX - bounds.left, y: event.clientY - bounds.top };
  };
  // the release is heard on the window (a box may end outside the canvas), only while a press lasts
  const release = (event) => {
    window.removeEventListener("mouseup", release);
    const press = view.press;
    view.press = null;
    if (!press) return;
    view.box.style.display = "none";
    const point = at(event);
    if (press.dragging) { select(view, inside(view, press.start, point)); return; }
    const hit = nearest(view, point.x, point.y);
    if (hit < 0) return;
    const row = view.data.row[hit];
    const current = view.data.selected;
    if (!event.shiftKey) select(view, [row]);
    else select(view, current.includes(row) ? current.filter((r) => r !== row) : [...current, row]);
  };
  canvas.addEventListener("mousedown", (event) => {
    if (event.button !== 0) return;
    view.press = { start: at(event), dragging: false };
    window.addEventListener("mouseup", release);
  });
  canvas.addEventListener("mousemove", (event) => {
    const point = at(event);
    const press = view.press;
    if (press && (press.dragging || Math.hypot(point.x - press.start.x, point.y - press.start.y) > DRAG_PX)) {
      press.dragging = true;
      showTip(view, -1);
      Object.assign(view.box.style, {
        display: "block",
        left: Math.min(point.x, press.start.x) + "px",
        top: Math.min(point.y, press.start.y) + "px",
        width: Math.abs(point.x - press.start.x) + "px",
        height: Math.abs(point.y - press.start.y) + "px",
      });
      return;
    }
    const hovered = nearest(view, point.x, point.y);
    canvas.style.cursor = hovered < 0 ? "crosshair" : "pointer";
    showTip(view, hovered, point.x, point.y);
  });
  canvas.addEventListener("mouseleave", () => showTip(view, -1));
  canvas.addEventListener("dblclick", () => select(view, []));
}

function keepAtlas(view, data, setStateValue) {
  if (data.atlas) {
    view.atlas = data.atlas;
    view.atlasKey = data.atlas_key;
    view.thumb.style.backgroundImage = `url(${data.atlas.src})`; // set once: the image is decoded once
    setStateValue("thumbnails", data.atlas_key);
  } else if (data.atlas_key && view.atlasKey !== data.atlas_key && view.asked !== data.atlas_key) {
    view.asked = data.atlas_key; // after this frame is on screen: the atlas never holds the drawing back
    requestAnimationFrame(() => setTimeout(() => setStateValue("thumbnails", ""), 0));
  }
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let view = parentElement.clipmemMap;
  if (!view || !view.root.isConnected) {
    view = build(parentElement);
    parentElement.clipmemMap = view;
  }
  view.setStateValue = setStateValue;
  view.data = data;
  view.stage.style.height = data.height + "px";
  drawLegend(view);
  draw(view);
  keepAtlas(view, data, setStateValue);
}
