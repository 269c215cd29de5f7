// The twistgw dashboard: polls dashboard.json and draws Gateways, listeners, routes and
// backends with request rate, 5xx rate and p99 over the last few seconds. Every value
// from the configuration goes into the page as text (textContent), never as HTML.
"use strict";

(() => {
  const REFRESH_MS = 2000;
  const WINDOW_MS = 10000; // rates and p99 over about this much of the recent past
  const $ = (id) => document.getElementById(id);
  const samples = []; // {time, counts: Map(key -> {requests, errors, buckets})}
  const open = new Set(); // keys of the backend lists opened
  let latest = null;
  let timer = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function key(...parts) {
    return parts.join("\u0000");
  }

  // Cumulative counts of a document by route and by backend.
  function countsOf(doc) {
    const counts = new Map();
    for (const gateway of doc.gateways) {
      for (const listener of gateway.listeners) {
        for (const route of listener.routes) {
          counts.set(key(gateway.name, route.name), route);
          for (const backend of route.backends) {
            counts.set(key(gateway.name, route.name, backend.name), backend);
          }
        }
      }
    }
    return counts;
  }

  // p99 in seconds from the growth of cumulative histogram buckets, interpolated
  // within the bucket as Prometheus's histogram_quantile does; null without requests.
  function p99(bounds, before, after) {
    if (!after) return null;
    const last = bounds.length - 1;
    const delta = (i) => after[i] - (before ? before[i] : 0);
    const total = delta(last);
    if (total <= 0) return null;
    const target = 0.99 * total;
    let previous = 0;
    for (let i = 0; i <= last; i++) {
      const count = delta(i);
      if (count >= target) {
        const lower = i === 0 ? 0 : bounds[i - 1];
        if (bounds[i] === null) return lower; // past the last bound: at least that
        return lower + ((bounds[i] - lower) * (target - previous)) / Math.max(count - previous, 1e-9);
      }
      previous = count;
    }
    return null;
  }

  // Rates of one route or backend between the oldest sample kept and now.
  function rates(id, current) {
    const now = samples[samples.length - 1];
    const then = samples[0];
    const seconds = (now.time - then.time) / 1000;
    const old = then.counts.get(id);
    if (samples.length < 2 || seconds <= 0) return { rate: null, errors: null, p99: null };
    const requests = Math.max(current.requests - (old ? old.requests : 0), 0);
    const errors = Math.max(current.errors - (old ? old.errors : 0), 0);
    return {
      rate: requests / seconds,
      errors: requests ? errors / requests : null,
      p99: current.buckets ? p99(latest.buckets, old && old.buckets, current.buckets) : null,
    };
  }

  function formatRate(value) {
    return value === null ? "–" : value < 10 ? value.toFixed(1) : Math.round(value).toString();
  }

  function formatShare(value) {
    return value === null ? "–" : (100 * value).toFixed(value > 0 && value < 0.01 ? 2 : 1) + " %";
  }

  function formatSeconds(value) {
    if (value === null) return "–";
    return value < 1 ? (1000 * value).toFixed(value < 0.01 ? 2 : 0) + " ms" : value.toFixed(2) + " s";
  }

  function problemList(problems) {
    const list = el("ul", "problems");
    for (const problem of problems) list.append(el("li", "", problem));
    return list;
  }

  // Whether every term of the filter occurs in one of the texts.
  function matches(terms, texts) {
    const haystack = texts.join("\n").toLowerCase();
    return terms.every((term) => haystack.includes(term));
  }

  function backendCell(gateway, route) {
    const cell = el("td", "backends");
    if (!route.backends.length) return cell;
    const details = el("details");
    const id = key(gateway.name, route.name);
    details.open = open.has(id);
    details.addEventListener("toggle", () => (details.open ? open.add(id) : open.delete(id)));
    const names = route.backends.map((backend) => backend.name).join(", ");
    details.append(el("summary", "", names));
    const list = el("ul", "backends");
    for (const backend of route.backends) {
      const live = rates(key(gateway.name, route.name, backend.name), backend);
      const down = backend.down || [];
      const item = el("li", backend.invalid || down.length ? "invalid" : "");
      const endpoints = backend.endpoints.length
        ? backend.endpoints.map((e) => (down.includes(e) ? `${e} (out of rotation)` : e)).join(", ")
        : "no endpoints";
      item.textContent = `${backend.name}${backend.invalid ? " (invalid)" : ""}: ${endpoints}; ` +
        `${formatRate(live.rate)} req/s, ${formatShare(live.errors)} 5xx, ${backend.requests} total`;
      list.append(item);
    }
    details.append(list);
    cell.append(details);
    return cell;
  }

  function routeRow(gateway, listener, route) {
    const row = el("tr", route.problems.length ? "route problem" : "route");
    row.dataset.route = route.name;
    const name = el("td", "name");
    name.append(el("span", "route-name", route.name), " ", el("span", "kind", route.kind));
    if (route.problems.length) name.append(problemList(route.problems));
    const live = rates(key(gateway.name, route.name), route);
    const errors = el("td", "num errors", formatShare(live.errors));
    if (live.errors) errors.classList.add("high");
    row.append(
      name,
      el("td", "num rate", formatRate(live.rate)),
      errors,
      el("td", "num p99", formatSeconds(live.p99)),
      el("td", "num total", route.requests),
      backendCell(gateway, route),
    );
    return row;
  }

  function routeTable(rows) {
    const table = el("table");
    const head = el("tr");
    for (const [title, cls] of [["Route", ""], ["req/s", "num"], ["5xx", "num"], ["p99", "num"],
      ["requests", "num"], ["Backends", ""]]) {
      head.append(el("th", cls, title));
    }
    table.append(el("thead"), el("tbody"));
    table.tHead.append(head);
    table.tBodies[0].append(...rows);
    return table;
  }

  function routeTexts(route) {
    const texts = [route.name, route.kind, ...route.problems];
    for (const backend of route.backends || []) texts.push(backend.name, ...backend.endpoints);
    return texts;
  }

  function listenerTitle(listener) {
    const where = listener.port ? ` ${listener.protocol} ${listener.address}:${listener.port}` : "";
    const host = listener.hostname ? ` ${listener.hostname}` : "";
    const attached = listener.attachedRoutes === null ? "" : `, ${listener.attachedRoutes} routes attached`;
    return `Listener ${listener.name}${where}${host}${attached}`;
  }

  function drawGateway(gateway, terms, problemsOnly, tally) {
    const section = el("section", gateway.problems.length ? "gateway problem" : "gateway");
    section.dataset.gateway = gateway.name;
    const addresses = gateway.addresses.length ? ` (${gateway.addresses.join(", ")})` : "";
    section.append(el("h2", "", `Gateway ${gateway.name}${addresses}`));
    if (gateway.problems.length) section.append(problemList(gateway.problems));
    const own = [gateway.name, ...gateway.problems];
    let shown = terms.length === 0 || matches(terms, own);
    for (const listener of gateway.listeners) {
      tally.listeners += 1;
      const context = [...own, listener.name, ...listener.problems];
      const whole = !problemsOnly || gateway.problems.length || listener.problems.length;
      const rows = [];
      for (const route of listener.routes) {
        tally.routes += 1;
        if (route.problems.length) tally.problems += 1;
        if (problemsOnly && !whole && !route.problems.length) continue;
        if (terms.length && !matches(terms, [...context, ...routeTexts(route)])) continue;
        rows.push(routeRow(gateway, listener, route));
      }
      const listed = rows.length || (whole && (!terms.length || matches(terms, context)));
      if (!listed || (problemsOnly && !rows.length && !listener.problems.length)) continue;
      shown = true;
      const part = el("div", listener.problems.length ? "listener problem" : "listener");
      part.dataset.listener = listener.name;
      part.append(el("h3", "", listenerTitle(listener)));
      if (listener.problems.length) part.append(problemList(listener.problems));
      if (rows.length) part.append(routeTable(rows));
      else if (!listener.routes.length) part.append(el("p", "muted", "No routes."));
      section.append(part);
    }
    const loose = gateway.unattached.filter((route) =>
      (!terms.length || matches(terms, [...own, ...routeTexts(route)])) &&
      (!problemsOnly || route.problems.length));
    tally.routes += gateway.unattached.length;
    tally.problems += gateway.unattached.filter((route) => route.problems.length).length;
    if (loose.length) {
      shown = true;
      const part = el("div", "listener unattached");
      part.append(el("h3", "", "Routes naming this Gateway but in none of its listeners"));
      const rows = loose.map((route) => {
        const row = el("tr", route.problems.length ? "route problem" : "route");
        row.dataset.route = route.name;
        const name = el("td", "name");
        name.append(el("span", "route-name", route.name), " ", el("span", "kind", route.kind));
        if (route.problems.length) name.append(problemList(route.problems));
        row.append(name);
        return row;
      });
      const table = el("table");
      table.append(...rows);
      part.append(table);
      section.append(part);
    }
    return shown ? section : null;
  }

  function draw() {
    if (!latest) return;
    const terms = $("search").value.toLowerCase().split(/\s+/).filter(Boolean);
    const problemsOnly = $("problems-only").checked;
    const tally = { listeners: 0, routes: 0, problems: 0 };
    const errors = $("errors");
    errors.replaceChildren();
    if (latest.errors.length) {
      errors.append(el("h2", "", "Configuration errors"));
      const list = el("ul", "problems");
      for (const error of latest.errors) list.append(el("li", "", `${error.source}: ${error.message}`));
      errors.append(list);
    }
    const parts = [];
    for (const gateway of latest.gateways) {
      const section = drawGateway(gateway, terms, problemsOnly, tally);
      if (section) parts.push(section);
    }
    if (!parts.length) parts.push(el("p", "muted", latest.gateways.length ? "Nothing matches." : "No Gateways."));
    $("gateways").replaceChildren(...parts);
    $("summary").textContent = `${latest.gateways.length} Gateways, ${tally.listeners} listeners, ` +
      `${tally.routes} routes, ${tally.problems} with problems`;
  }

  async function refresh() {
    timer = null;
    const token = sessionStorage.getItem("twistgw-admin-token");
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    try {
      const response = await fetch("dashboard.json", { headers, cache: "no-store" });
      if (response.status === 401) {
        $("token-form").hidden = false;
        $("updated").textContent = "token needed";
        return; // until a token is given
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      latest = await response.json();
      const time = Date.now();
      samples.push({ time, counts: countsOf(latest) });
      while (samples.length > 2 && time - samples[1].time >= WINDOW_MS) samples.shift();
      draw();
      $("updated").textContent = `updated ${new Date(time).toLocaleTimeString()}`;
    } catch (error) {
      $("updated").textContent = `update failed: ${error.message}`;
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function start() {
    let pending = null;
    $("search").addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(draw, 150);
    });
    $("problems-only").addEventListener("change", draw);
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem("twistgw-admin-token", $("token").value.trim());
      $("token-form").hidden = true;
      if (timer === null) refresh();
    });
    refresh();
  }

  start();
})();
