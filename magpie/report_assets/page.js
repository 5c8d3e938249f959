"use strict";
// The Magpie report page. Every string from the data is inserted as text (createTextNode,
// textContent, setAttribute of plain attributes): never parsed as markup, never a URL.
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 50;
  const NULL = "(none)";
  const OTHER = "(other)";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
  const num = (x) => (Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(3)).toString());

  function barChart(bars, width) {
    // Horizontal bars: [label, count] rows; labels are data, drawn as SVG text.
    const row = 18, left = 190, w = width || 460;
    const max = Math.max(1, ...bars.map((b) => b[1]));
    const chart = svg("svg", { width: w, height: bars.length * row + 4, class: "bars" });
    bars.forEach(([label, count], i) => {
      const y = i * row + 2;
      const t = svg("text", { x: left - 6, y: y + 13, "text-anchor": "end" }, label);
      const bw = ((w - left - 70) * count) / max;
      const cls = label === NULL ? "bar null" : "bar";
      chart.append(t, svg("rect", { x: left, y: y + 2, width: Math.max(bw, 0), height: row - 5, class: cls }));
      chart.append(svg("text", { x: left + bw + 4, y: y + 13 }, fmt(count)));
    });
    return chart;
  }

  function histogram(h) {
    const w = 460, hgt = 150, pad = 30;
    const max = Math.max(1, ...h.counts);
    const lo = h.edges[0], hi = h.edges[h.edges.length - 1];
    const x = (v) => pad + ((w - 2 * pad) * (v - lo)) / (hi - lo || 1);
    const chart = svg("svg", { width: w, height: hgt + 20, class: "hist" });
    chart.appendChild(svg("title", {}, "hover a bar for its range and count"));
    h.counts.forEach((c, i) => {
      const bh = ((hgt - 18) * c) / max;
      const x0 = x(h.edges[i]), x1 = x(h.edges[i + 1]);
      const r = svg("rect", { x: x0, y: hgt - bh, width: Math.max(x1 - x0 - 1, 1), height: bh, class: "bar" });
      r.appendChild(svg("title", {}, `${num(h.edges[i])} – ${num(h.edges[i + 1])}: ${fmt(c)}`));
      chart.appendChild(r);
    });
    chart.append(
      svg("line", { x1: pad, x2: w - pad, y1: hgt, y2: hgt, class: "axis" }),
      svg("text", { x: pad, y: hgt + 15 }, num(lo)),
      svg("text", { x: w - pad, y: hgt + 15, "text-anchor": "end" }, num(hi)),
      svg("text", { x: w - pad, y: 10, "text-anchor": "end" }, `tallest bin ${fmt(max)}`)
    );
    if (h.threshold !== null && h.threshold >= lo && h.threshold <= hi) {
      const tx = x(h.threshold);
      chart.append(
        svg("line", { x1: tx, x2: tx, y1: 0, y2: hgt, class: "threshold" }),
        svg("text", { x: tx + 3, y: 22, class: "threshold-label" }, `threshold ${h.threshold}`)
      );
    }
    return chart;
  }

  function section(id, title, ...children) {
    return el("section", { id }, el("h2", {}, title), ...children);
  }

  function funnel() {
    const rows = DATA.funnel.map((s) =>
      el(
        "tr",
        { "data-stage": s.stage },
        el("td", { class: "stage" }, s.stage),
        el("td", { class: "file", title: s.file }, String(s.file).split(/[\\/]/).pop()),
        el("td", { class: "records-in num" }, fmt(s.records_in)),
        el("td", { class: "records-out num" }, fmt(s.records_out)),
        el("td", { class: "flags" }, causes(s.flags)),
        el("td", { class: "rejected" }, causes(s.rejected))
      )
    );
    const head = el("tr", {}, ...["stage", "file", "records in", "records out", "flags by cause", "rejected by rule"].map((h) => el("th", {}, h)));
    const table = el("table", { id: "funnel-table" }, el("thead", {}, head), el("tbody", {}, ...rows));
    const bars = barChart(DATA.funnel.map((s) => [s.stage, s.records_out || 0]));
    return section("funnel", "Funnel: records through the stages", table, bars);
  }

  function causes(map) {
    const entries = Object.entries(map || {});
    if (!entries.length) return "–";
    return el("ul", {}, ...entries.map(([k, v]) => el("li", {}, `${k}: ${fmt(v)}`)));
  }

  function charts() {
    const st = DATA.stats;
    const grid = el("div", { class: "grid" });
    for (const [field, c] of Object.entries(st.labels)) {
      let bars = c.bars;
      if (c.confidence) bars = bars.map(([k, n]) => [k in c.confidence ? `${k} (conf ${c.confidence[k]})` : k, n]);
      const nulls = (c.bars.find((b) => b[0] === NULL) || [0, 0])[1];
      grid.appendChild(el("figure", { "data-field": field }, el("figcaption", {}, `${c.title} — ${fmt(nulls)} null or cannot judge`), barChart(bars)));
    }
    for (const [field, h] of Object.entries(st.numbers)) {
      if (!h.count) {
        grid.appendChild(el("figure", { "data-field": field }, el("figcaption", {}, `${h.title}: all ${fmt(h.nulls)} null or cannot judge`)));
        continue;
      }
      let cap = `${h.title} (${h.unit}): ${fmt(h.count)} values, median ${num(h.median)}, ${fmt(h.nulls)} null`;
      if (h.below !== undefined) cap += `; ${fmt(h.below)} below ${h.threshold}`;
      grid.appendChild(el("figure", { "data-field": field }, el("figcaption", {}, cap), histogram(h)));
    }
    const flags = Object.entries(st.flags);
    if (flags.length) grid.appendChild(el("figure", { "data-field": "flags" }, el("figcaption", {}, "Flags by cause"), barChart(flags)));
    return section("distributions", `Distributions over all ${fmt(st.records)} records`, grid);
  }

  // ---------------------------------------------------------------- samples browser
  const sample = DATA.sample;
  const haystack = sample.map((r) =>
    [r.id, ...r.turns.map((t) => t[1] + " " + (t[2] || "")), JSON.stringify(r.tags), JSON.stringify(r.flags)].join("\n").toLowerCase()
  );
  const state = { query: "", filters: {}, flag: "", group: null, page: 0, matches: [] };
  const list = el("div", { id: "records" });
  const info = el("span", { id: "page-info" });
  const groupNote = el("div", { id: "group-note" });

  function matches(r, i) {
    if (state.query && !haystack[i].includes(state.query)) return false;
    for (const [field, want] of Object.entries(state.filters)) {
      if (!want) continue;
      const have = r.tags[field] === undefined ? NULL : String(r.tags[field]);
      if (want === OTHER) {
        const listed = DATA.stats.labels[field].bars.map((b) => b[0]);
        if (listed.includes(have)) return false;
      } else if (have !== want) return false;
    }
    const flagged = Object.keys(r.flags).length > 0;
    if (state.flag === "flagged" && !flagged) return false;
    if (state.flag === "unflagged" && flagged) return false;
    const at = state.flag.indexOf(": ");
    if (at > 0) {
      const k = state.flag.slice(0, at), v = r.flags[k];
      if (v === undefined || (typeof v === "string" ? v : JSON.stringify(v)) !== state.flag.slice(at + 2)) return false;
    }
    if (state.group !== null && r.tags.min_similar_conversation_id !== state.group && r.id !== state.group) return false;
    return true;
  }

  function update() {
    state.matches = [];
    sample.forEach((r, i) => matches(r, i) && state.matches.push(i));
    state.page = Math.min(state.page, Math.max(0, Math.ceil(state.matches.length / PAGE) - 1));
    draw();
  }

  function draw() {
    const start = state.page * PAGE;
    const shown = state.matches.slice(start, start + PAGE);
    list.replaceChildren(...shown.map((i) => card(sample[i])));
    const end = start + shown.length;
    info.textContent = shown.length
      ? `${fmt(start + 1)}–${fmt(end)} of ${fmt(state.matches.length)} matching (of ${fmt(sample.length)} sampled)`
      : `no record matches (of ${fmt(sample.length)} sampled)`;
    groupNote.replaceChildren();
    if (state.group !== null) {
      const clear = el("button", { type: "button", id: "clear-group" }, "show all");
      clear.addEventListener("click", () => { state.group = null; update(); });
      groupNote.append(`Near-duplicate group of ${state.group} (members in the sample): `, clear);
    }
  }

  function openGroup(group) {
    // The whole group as the sample holds it: the search and the filters are cleared.
    Object.assign(state, { group, query: "", filters: {}, flag: "", page: 0 });
    document.getElementById("search").value = "";
    document.querySelectorAll(".controls select").forEach((s) => { s.value = ""; });
    update();
    window.scrollTo(0, list.offsetTop);
  }

  function card(r) {
    const turns = r.turns.map(([role, text, reasoning]) => {
      const turn = el("div", { class: `turn ${role}` }, el("div", { class: "role" }, role));
      if (reasoning) turn.appendChild(el("details", { class: "reasoning" }, el("summary", {}, "reasoning"), el("div", { class: "text" }, reasoning)));
      turn.appendChild(el("div", { class: "text" }, text));
      return turn;
    });
    if (!turns.length) turns.push(el("div", { class: "turn empty" }, "(no conversation)"));
    const tags = Object.entries(r.tags).map(([k, v]) =>
      el("li", { "data-tag": k }, el("span", { class: "key" }, k), " ", typeof v === "string" ? v : JSON.stringify(v))
    );
    const flags = Object.entries(r.flags).map(([k, v]) => el("li", { class: "flag", "data-flag": k }, `${k}: ${v}`));
    const side = el("aside", {}, el("ul", { class: "tags" }, ...tags), flags.length ? el("ul", { class: "flags" }, ...flags) : null);
    const group = r.tags.min_similar_conversation_id;
    if (group !== undefined && (group !== r.id || (r.tags.repeat_count || 0) > 0)) {
      const b = el("button", { type: "button", class: "group" }, `near-duplicate group (${fmt(r.tags.repeat_count)} others near it in all)`);
      b.addEventListener("click", () => openGroup(group));
      side.appendChild(b);
    }
    return el("article", { class: "record", "data-id": r.id === null ? "" : String(r.id) }, el("header", {}, String(r.id)), el("div", { class: "body" }, el("div", { class: "conversation" }, ...turns), side));
  }

  function controls() {
    const search = el("input", { type: "search", id: "search", placeholder: "search the text, ids and tags" });
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.query = search.value.toLowerCase(); state.page = 0; update(); }, 120);
    });
    const selects = Object.entries(DATA.stats.labels).map(([field, c]) => {
      const s = el("select", { id: `filter-${field}`, "data-field": field }, el("option", { value: "" }, `${field}: any`), ...c.bars.filter((b) => b[1] > 0).map((b) => el("option", { value: b[0] }, b[0])));
      s.addEventListener("change", () => { state.filters[field] = s.value; state.page = 0; update(); });
      return s;
    });
    const flagKeys = Object.keys(DATA.stats.flags);
    const flag = el("select", { id: "filter-flag" }, el("option", { value: "" }, "flags: any"), el("option", { value: "flagged" }, "flagged"), el("option", { value: "unflagged" }, "not flagged"), ...flagKeys.map((k) => el("option", { value: k }, k)));
    flag.addEventListener("change", () => { state.flag = flag.value; state.page = 0; update(); });
    const prev = el("button", { type: "button", id: "prev" }, "◀ previous");
    const next = el("button", { type: "button", id: "next" }, "next ▶");
    prev.addEventListener("click", () => { if (state.page > 0) { state.page--; draw(); } });
    next.addEventListener("click", () => { if ((state.page + 1) * PAGE < state.matches.length) { state.page++; draw(); } });
    return el("div", { class: "controls" }, search, ...selects, flag, el("div", { class: "pager" }, prev, info, next));
  }

  function samples() {
    const st = DATA.stats;
    const note = sample.length < st.records
      ? `A uniform random sample of ${fmt(sample.length)} of the ${fmt(st.records)} records (the counts above use every record).`
      : `All ${fmt(st.records)} records.`;
    return section("samples", "Samples", el("p", { id: "sample-note" }, note), controls(), groupNote, list);
  }

  const header = el("header", { id: "top" }, el("h1", {}, "Magpie report"), el("p", {}, `Records of ${DATA.files.join(" + ")} (from ${DATA.title})`));
  document.body.append(header, funnel(), charts(), samples());
  update();
  document.body.dataset.ready = "1";
})();
