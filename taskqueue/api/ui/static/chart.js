// A line chart in inline SVG: a few series over a sliding time window, redrawn on demand.
import { el, fixed } from "./dom.js";

const HEIGHT = 180;
const PAD = { left: 44, right: 8, top: 10, bottom: 20 };

/**
 * A chart of ``series`` ([{key, label}]) whose values are in ``unit``; returns {node, draw}.
 * draw(points, windowMs) plots points ({t, v: {key: value}}) of the last windowMs.
 */
export function lineChart(name, title, series, unit) {
  const svg = el("svg", { role: "img", "aria-label": title, height: HEIGHT });
  const legend = el("div", { class: "legend" });
  const node = el("figure", { class: "chart card", "data-chart": name },
    el("h2", {}, title), svg, legend);

  function draw(points, windowMs) {
    const now = Date.now();
    // A young page spans only the time it has seen, so its first minute is not a sliver.
    const span = Math.max(Math.min(windowMs, now - (points[0]?.t ?? now)), 30000);
    const shown = points.filter((p) => p.t >= now - span);
    const width = Math.max(svg.clientWidth || 600, 200);
    const peak = Math.max(1e-9, ...shown.flatMap((p) => series.map((s) => p.v[s.key] ?? 0)));
    const x = (t) => PAD.left + ((t - (now - span)) / span) * (width - PAD.left - PAD.right);
    const y = (v) => HEIGHT - PAD.bottom - (v / peak) * (HEIGHT - PAD.top - PAD.bottom);
    const children = [
      el("line", { class: "axis", x1: PAD.left, x2: width - PAD.right, y1: y(0), y2: y(0) }),
      el("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: y(0) }),
      el("text", { x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end" }, shown.length ? fixed(peak, peak < 10 ? 1 : 0) : ""),
      el("text", { x: PAD.left - 4, y: y(0), "text-anchor": "end" }, "0"),
      el("text", { x: PAD.left, y: HEIGHT - 4 }, span < 120000 ? `−${Math.round(span / 1000)} s` : `−${Math.round(span / 60000)} min`),
      el("text", { x: width - PAD.right, y: HEIGHT - 4, "text-anchor": "end" }, "now"),
    ];
    series.forEach((s, i) => {
      const coords = shown.map((p) => `${x(p.t).toFixed(1)},${y(p.v[s.key] ?? 0).toFixed(1)}`);
      if (coords.length === 1) coords.unshift(`${(x(shown[0].t) - 4).toFixed(1)},${coords[0].split(",")[1]}`);
      if (coords.length) {
        children.push(el("polyline", { class: `c${i}`, fill: "none", "stroke-width": 2, points: coords.join(" ") }));
      }
    });
    svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    svg.replaceChildren(...children);
    const last = shown.at(-1)?.v ?? {};
    legend.replaceChildren(...series.map((s, i) => {
      const top = Math.max(0, ...shown.map((p) => p.v[s.key] ?? 0));
      node.dataset[`peak_${s.key}`] = String(top);
      return el("span", { "data-series": s.key }, el("i", { class: `c${i}` }), `${s.label} `,
        el("strong", {}, shown.length ? `${fixed(last[s.key] ?? 0)} ${unit}` : "—"));
    }));
    svg.setAttribute("aria-label",
      `${title}, latest: ${series.map((s) => `${s.label} ${fixed(last[s.key] ?? 0)} ${unit}`).join(", ")}`);
  }

  return { node, draw };
}
