// ferry inspect: the agent's inspection page. Plain JavaScript, no dependencies.
//
// The list comes from /ui/events (Server-Sent Events with one short summary per request;
// /ui/requests is polled instead when the stream cannot be used). Details, replay, clear
// and the tunnels use the local API. Everything recorded is untrusted: it is only ever put
// in the page as text (textContent, text nodes, attributes), never as HTML.
'use strict';

(() => {
  const HEX_LIMIT = 4096; // bytes shown in a hex dump
  const HIGHLIGHT_LIMIT = 256 * 1024; // JSON larger than this is pretty-printed without colours
  const CACHE_SIZE = 30; // exchanges kept in memory for quick reselection
  const MAX_BODY = 1 << 20; // what the agent captures of each body (inspect.MaxBody)

  const $ = (id) => document.getElementById(id);
  const ui = {
    list: $('list'), empty: $('empty'), nomatch: $('nomatch'), emptyURLs: $('empty-urls'), count: $('count'), filter: $('filter'),
    clear: $('clear'), detail: $('detail'), placeholder: $('placeholder'), tunnels: $('tunnels'), conn: $('conn'),
    editor: $('editor'), edForm: $('editor-form'), edOf: $('editor-of'), edMethod: $('ed-method'), edURI: $('ed-uri'),
    edHeaders: $('ed-headers'), edBody: $('ed-body'), edBodyNote: $('ed-body-note'), edError: $('ed-error'),
    edSend: $('ed-send'), edCancel: $('ed-cancel'), toast: $('toast'),
  };

  const state = {
    items: [], // summaries, newest first
    byId: new Map(),
    visible: [], // items that pass the filter
    rows: new Map(), // id -> <li>
    loaded: false, // the first snapshot arrived
    selected: null, // id
    shown: null, // the exchange in the detail pane
    cache: new Map(), // id -> exchange (full, from the API)
    pending: null, // {of, before: Set, until}: select the replay of `of` once it shows up
    editing: null, // the exchange open in the editor
  };

  // ---- helpers ----------------------------------------------------------------

  // el(tag, props, ...children): props are class, text, title, on* handlers, data-*, or
  // attributes; children are nodes or strings (which become text nodes).
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c != null && c !== false) e.append(c);
    return e;
  }

  const pad = (n, w = 2) => String(n).padStart(w, '0');
  function clock(iso) {
    const d = new Date(iso);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fullTime(iso) {
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(iso)}.${pad(d.getMilliseconds(), 3)}`;
  }
  function duration(ns) {
    if (!(ns >= 0)) return '';
    if (ns < 1e3) return `${ns} ns`;
    if (ns < 1e6) return `${Math.round(ns / 1e3)} µs`;
    if (ns < 1e8) return `${(ns / 1e6).toFixed(1)} ms`;
    if (ns < 1e9) return `${Math.round(ns / 1e6)} ms`;
    return `${(ns / 1e9).toFixed(2)} s`;
  }
  function size(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }
  const statusClass = (code) => (code >= 100 && code < 600 ? `s${Math.floor(code / 100)}` : 'serr');
  const methodClass = (m) => `method m-${/^[A-Z]+$/.test(m) ? m : 'OTHER'}`;

  function statusPill(code, error) {
    if (!code) return el('span', { class: 'status-pill serr', title: error || 'no response', text: 'ERR' });
    return el('span', { class: `status-pill ${statusClass(code)}`, text: String(code) });
  }

  // pathNode shows /path with ?query dimmed.
  function pathNode(uri) {
    const i = uri.indexOf('?');
    if (i < 0) return document.createTextNode(uri);
    const f = document.createDocumentFragment();
    f.append(uri.slice(0, i), el('span', { class: 'q', text: uri.slice(i) }));
    return f;
  }

  function header(headers, name) {
    if (!headers) return '';
    const lower = name.toLowerCase();
    for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === lower) return (v && v[0]) || '';
    return '';
  }

  function bytesOf(b64) {
    const bin = atob(b64 || '');
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  let toastTimer = 0;
  function toast(msg, bad) {
    ui.toast.textContent = msg;
    ui.toast.classList.toggle('bad', !!bad);
    ui.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { ui.toast.hidden = true; }, bad ? 6000 : 2500);
  }

  // apiError reads {"msg": ...} from a failed API response.
  async function apiError(resp) {
    try {
      const j = await resp.json();
      if (j && j.msg) return j.msg;
    } catch (_) { /* not JSON */ }
    return `${resp.status} ${resp.statusText}`;
  }

  function setConn(kind) {
    const labels = { live: 'live', polling: 'polling', down: 'agent unreachable', connecting: 'connecting' };
    ui.conn.className = `conn ${kind}`;
    ui.conn.querySelector('.label').textContent = labels[kind] || kind;
  }

  // ---- tunnels ----------------------------------------------------------------

  let tunnelsKey = '';
  async function loadTunnels() {
    let list;
    try {
      const r = await fetch('/api/tunnels', { cache: 'no-store' });
      if (!r.ok) throw new Error(await apiError(r));
      list = (await r.json()).tunnels || [];
    } catch (_) {
      return;
    }
    const key = JSON.stringify(list);
    if (key === tunnelsKey) return;
    tunnelsKey = key;
    // One chip per tunnel: the API lists one entry per public URL, "NAME" then "NAME (scheme)".
    const groups = new Map();
    for (const t of list) {
      const name = String(t.name || '').replace(/ \([a-z]+\)$/, '');
      if (!groups.has(name)) groups.set(name, { name, urls: [], addr: (t.config && t.config.addr) || '' });
      groups.get(name).urls.push(String(t.public_url || ''));
    }
    const rank = (u) => (u.startsWith('https:') ? 0 : 1); // https first
    ui.tunnels.replaceChildren();
    ui.emptyURLs.replaceChildren();
    if (groups.size === 0) {
      ui.tunnels.append(el('li', { class: 'muted', text: 'no tunnels online' }));
      return;
    }
    for (const g of groups.values()) {
      g.urls.sort((a, b) => rank(a) - rank(b));
      const li = el('li', { class: 'tunnel', title: `${g.name}: ${g.urls.join(', ')} → ${g.addr}` },
        el('span', { class: 'name', text: g.name }));
      g.urls.forEach((u, i) => {
        if (i > 0) li.append(el('span', { class: 'arrow', text: '·' }));
        li.append(/^https?:\/\//.test(u)
          ? el('a', { class: 'url', href: u, target: '_blank', rel: 'noopener noreferrer', text: u })
          : el('span', { class: 'url', text: u }));
      });
      li.append(el('span', { class: 'arrow', text: '→' }), el('span', { class: 'addr', text: g.addr }));
      ui.tunnels.append(li);
      const first = g.urls.find((u) => /^https?:\/\//.test(u));
      if (first && !ui.emptyURLs.firstChild) ui.emptyURLs.append('Try ', el('code', { text: `curl ${first}/` }));
    }
  }

  // ---- the list ---------------------------------------------------------------

  function matches(s, q) {
    if (!q) return true;
    const hay = `${s.method} ${s.uri} ${s.status_code || 'err'} ${s.error || ''} ${s.replay_of ? 'replay' : ''} ${s.tunnel_name}`;
    return hay.toLowerCase().includes(q);
  }

  function makeRow(s) {
    const path = el('span', { class: 'path', title: s.uri });
    if (s.replay_of) path.append(el('span', { class: 'badge-replay', title: `replay of ${s.replay_of}`, text: 'REPLAY' }));
    path.append(pathNode(s.uri));
    const li = el('li', { class: 'row', 'data-id': s.id, role: 'option', 'aria-selected': 'false' },
      el('span', { class: 'time', title: fullTime(s.start), text: clock(s.start) }),
      el('span', { class: methodClass(s.method), text: s.method }),
      path,
      el('span', { class: 'status', title: s.error || s.status || '' }, statusPill(s.status_code, s.error)),
      el('span', { class: 'dur', text: duration(s.duration) }));
    li.addEventListener('click', () => select(s.id));
    return li;
  }

  function render() {
    const q = ui.filter.value.trim().toLowerCase();
    state.visible = state.items.filter((s) => matches(s, q));

    // Keep what the user is looking at in place when rows are added above it.
    const list = ui.list;
    let anchor = null;
    let anchorOffset = 0;
    if (list.scrollTop > 0) {
      for (const row of list.children) {
        if (row.offsetTop + row.offsetHeight > list.scrollTop) {
          anchor = row;
          anchorOffset = row.offsetTop - list.scrollTop;
          break;
        }
      }
    }

    const keep = new Set(state.visible.map((s) => s.id));
    for (const [id, row] of state.rows) {
      if (!keep.has(id)) {
        row.remove();
        if (!state.byId.has(id)) state.rows.delete(id);
      }
    }
    state.visible.forEach((s, i) => {
      let row = state.rows.get(s.id);
      if (!row) {
        row = makeRow(s);
        if (state.loaded) row.classList.add('fresh');
        state.rows.set(s.id, row);
      }
      row.classList.toggle('selected', s.id === state.selected);
      row.setAttribute('aria-selected', String(s.id === state.selected));
      if (list.children[i] !== row) list.insertBefore(row, list.children[i] || null);
    });
    if (anchor && anchor.isConnected) list.scrollTop = anchor.offsetTop - anchorOffset;

    const n = state.items.length;
    ui.count.textContent = n === 0 ? '' : (state.visible.length === n ? `(${n})` : `(${state.visible.length} of ${n})`);
    ui.empty.hidden = n !== 0;
    ui.nomatch.hidden = n === 0 || state.visible.length !== 0;
    if (n === 0 && state.shown) showPlaceholder();
  }

  function applySnapshot(items) {
    state.items = items;
    state.byId = new Map(items.map((s) => [s.id, s]));
    for (const id of state.cache.keys()) if (!state.byId.has(id)) state.cache.delete(id);
    render();
    state.loaded = true;
    if (state.pending) {
      const p = state.pending;
      const hit = items.find((s) => s.replay_of === p.of && !p.before.has(s.id));
      if (hit) {
        state.pending = null;
        select(hit.id, true);
      } else if (Date.now() > p.until) {
        state.pending = null;
      }
    }
  }

  async function refresh() {
    const r = await fetch('/ui/requests', { cache: 'no-store' });
    if (!r.ok) throw new Error(await apiError(r));
    applySnapshot((await r.json()).requests || []);
  }

  // Live updates: the event stream, or polling when it cannot be used.
  let pollTimer = 0;
  function poll() {
    clearTimeout(pollTimer);
    refresh()
      .then(() => setConn('polling'), () => setConn('down'))
      .finally(() => { pollTimer = setTimeout(poll, 1000); });
  }
  function connect() {
    if (!window.EventSource) {
      poll();
      return;
    }
    const es = new EventSource('/ui/events');
    es.addEventListener('requests', (ev) => {
      setConn('live');
      try {
        applySnapshot(JSON.parse(ev.data).requests || []);
      } catch (err) {
        console.error('ferry inspect: bad event', err);
      }
    });
    es.addEventListener('open', () => setConn('live'));
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) { // refused for good: poll instead
        poll();
      } else {
        setConn('down'); // EventSource reconnects by itself
      }
    });
  }

  function move(delta) {
    const vis = state.visible;
    if (vis.length === 0) return;
    let i = vis.findIndex((s) => s.id === state.selected);
    i = i < 0 ? 0 : Math.max(0, Math.min(vis.length - 1, i + delta));
    select(vis[i].id, true);
  }

  // ---- the detail pane --------------------------------------------------------

  function showPlaceholder() {
    state.selected = null;
    state.shown = null;
    delete ui.detail.dataset.id;
    ui.detail.replaceChildren(ui.placeholder);
    for (const row of ui.list.querySelectorAll('.row.selected')) row.classList.remove('selected');
  }

  async function getExchange(id) {
    if (state.cache.has(id)) return state.cache.get(id);
    const r = await fetch(`/api/requests/http/${encodeURIComponent(id)}`, { cache: 'no-store' });
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(await apiError(r));
    const ex = await r.json();
    state.cache.set(id, ex);
    if (state.cache.size > CACHE_SIZE) state.cache.delete(state.cache.keys().next().value);
    return ex;
  }

  async function select(id, scroll) {
    state.selected = id;
    for (const [rid, row] of state.rows) {
      const on = rid === id;
      row.classList.toggle('selected', on);
      row.setAttribute('aria-selected', String(on));
      if (on && scroll) row.scrollIntoView({ block: 'nearest' });
    }
    let ex;
    try {
      ex = await getExchange(id);
    } catch (err) {
      if (state.selected === id) ui.detail.replaceChildren(el('div', { class: 'detail' }, el('div', { class: 'errbox', text: `Could not load ${id}: ${err.message}` })));
      return;
    }
    if (state.selected !== id) return; // another one was selected meanwhile
    if (!ex) {
      state.shown = null;
      delete ui.detail.dataset.id;
      ui.detail.replaceChildren(el('div', { class: 'placeholder' },
        el('p', { class: 'big', text: 'No longer recorded' }),
        el('p', { text: 'The agent keeps the last 500 requests; this one was cleared or dropped.' })));
      return;
    }
    state.shown = ex;
    renderDetail(ex);
  }

  function headersTable(headers, host) {
    const rows = [];
    if (host) rows.push(['Host', host]);
    for (const k of Object.keys(headers || {}).sort()) for (const v of headers[k] || []) rows.push([k, v]);
    if (rows.length === 0) return el('div', { class: 'none', text: 'no headers' });
    const tbody = el('tbody');
    for (const [k, v] of rows) tbody.append(el('tr', {}, el('td', { text: k }), el('td', { text: v })));
    return el('table', { class: 'headers' }, tbody);
  }

  function renderDetail(ex) {
    const req = ex.request || {};
    const resp = ex.response;
    const meta = el('div', { class: 'meta' },
      el('span', { title: ex.start }, fullTime(ex.start)),
      el('span', {}, 'took ', el('b', { text: duration(ex.duration) })),
      el('span', {}, 'from ', el('b', { text: ex.remote_addr || '?' })),
      el('span', {}, 'tunnel ', el('b', { text: ex.tunnel_name })),
      el('span', { class: 'mono', text: ex.id }));
    if (ex.replay_of) {
      const of = ex.replay_of;
      meta.append(el('span', { class: 'replay-of' }, 'replay of ', state.byId.has(of)
        ? el('button', { class: 'link', type: 'button', title: 'Show the original', text: of, onclick: () => select(of, true) })
        : el('span', { class: 'mono', text: of })));
    }
    const replayBtn = el('button', { type: 'button', class: 'btn primary', id: 'replay', title: 'Send the same request again (r)', text: 'Replay' });
    replayBtn.addEventListener('click', () => replay(ex, replayBtn));
    const editBtn = el('button', { type: 'button', class: 'btn', id: 'replay-edit', title: 'Edit, then send (e)', text: 'Replay with changes…' });
    editBtn.addEventListener('click', () => openEditor(ex));

    const detail = el('div', { class: 'detail' },
      el('div', { class: 'summary' },
        el('div', { class: 'line' },
          el('div', { class: 'reqline' },
            el('span', { class: methodClass(req.method || ''), text: req.method }),
            el('span', { class: 'uri', text: req.uri }),
            resp ? statusPill(resp.status_code) : statusPill(0, ex.error),
            resp ? el('span', { class: 'muted', text: (resp.status || '').replace(/^\d+\s*/, '') }) : null),
          meta),
        el('div', { class: 'actions' }, replayBtn, editBtn)));
    if (ex.error) detail.append(el('div', { class: 'errbox', text: `No response: ${ex.error}` }));

    detail.append(el('section', { class: 'card', id: 'request' },
      el('h3', {}, 'Request', el('span', { class: 'first', text: `${req.method} ${req.uri} ${req.proto || ''}` })),
      el('div', { class: 'sub', text: 'Headers' }),
      headersTable(req.headers, req.host),
      bodyView(req.body, req.headers, 'req-body', `${ex.id}-request`)));

    if (resp) {
      detail.append(el('section', { class: 'card', id: 'response' },
        el('h3', {}, 'Response', el('span', { class: 'first', text: `${resp.proto || ''} ${resp.status || resp.status_code}` })),
        el('div', { class: 'sub', text: 'Headers' }),
        headersTable(resp.headers),
        bodyView(resp.body, resp.headers, 'resp-body', `${ex.id}-response`)));
    } else {
      detail.append(el('section', { class: 'card', id: 'response' }, el('h3', {}, 'Response'),
        el('div', { class: 'none', text: 'no response was received from the upstream' })));
    }
    const pane = ui.detail;
    const keepScroll = state.shown && pane.dataset.id === ex.id ? pane.scrollTop : 0;
    pane.replaceChildren(detail);
    pane.dataset.id = ex.id;
    pane.scrollTop = keepScroll;
  }

  // ---- bodies -----------------------------------------------------------------

  // textOf returns the bytes as a string if they are UTF-8 text, else null. A cut at the
  // capture limit may split the last character; that is still text.
  function textOf(bytes, truncated) {
    const dec = new TextDecoder('utf-8', { fatal: true });
    let s = null;
    for (let cut = 0; cut <= (truncated ? 3 : 0) && s == null; cut++) {
      try { s = dec.decode(bytes.subarray(0, bytes.length - cut)); } catch (_) { /* not UTF-8 */ }
    }
    if (s == null) return null;
    // Valid UTF-8 can still be binary (NULs, control bytes): allow tabs, newlines, form feeds.
    let ctl = 0;
    const n = Math.min(s.length, 8192);
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if ((c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12) || c === 127) ctl++;
    }
    return ctl > n / 100 + 1 ? null : s;
  }

  // prettyJSON re-indents JSON text (already known to parse) by its tokens, so numbers and
  // strings are kept exactly as sent. Returns [class, text] pieces.
  function prettyJSON(src) {
    const out = [];
    let indent = 0;
    const nl = () => '\n' + '  '.repeat(indent);
    const push = (cls, text) => {
      const last = out[out.length - 1];
      if (!cls && last && !last[0]) last[1] += text;
      else out.push([cls, text]);
    };
    const skip = (i) => { while (i < src.length && ' \t\r\n'.includes(src[i])) i++; return i; };
    let i = 0;
    while ((i = skip(i)) < src.length) {
      const c = src[i];
      if (c === '"') {
        let j = i + 1;
        while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
        push(src[skip(j + 1)] === ':' ? 'j-key' : 'j-str', src.slice(i, j + 1));
        i = j + 1;
      } else if (c === '{' || c === '[') {
        const close = c === '{' ? '}' : ']';
        const k = skip(i + 1);
        if (src[k] === close) {
          push('', c + close);
          i = k + 1;
        } else {
          indent++;
          push('', c + nl());
          i++;
        }
      } else if (c === '}' || c === ']') {
        indent--;
        push('', nl() + c);
        i++;
      } else if (c === ',') {
        push('', ',' + nl());
        i++;
      } else if (c === ':') {
        push('', ': ');
        i++;
      } else {
        let j = i;
        while (j < src.length && !' \t\r\n,:]}'.includes(src[j])) j++;
        const tok = src.slice(i, j);
        push(/^-?\d/.test(tok) ? 'j-num' : 'j-lit', tok);
        i = j;
      }
    }
    return out;
  }

  function hexDump(bytes) {
    const frag = document.createDocumentFragment();
    const n = Math.min(bytes.length, HEX_LIMIT);
    for (let off = 0; off < n; off += 16) {
      let hex = '';
      let asc = '';
      for (let i = 0; i < 16; i++) {
        if (i === 8) hex += ' ';
        if (off + i < n) {
          const b = bytes[off + i];
          hex += b.toString(16).padStart(2, '0') + ' ';
          asc += b >= 32 && b < 127 ? String.fromCharCode(b) : '.';
        } else {
          hex += '   ';
        }
      }
      frag.append(el('span', { class: 'off', text: off.toString(16).padStart(8, '0') }), '  ', hex, ' ',
        el('span', { class: 'asc', text: `|${asc}|` }), '\n');
    }
    return frag;
  }

  async function decompress(bytes, encoding) {
    const ds = new DecompressionStream(encoding);
    const buf = await new Response(new Blob([bytes]).stream().pipeThrough(ds)).arrayBuffer();
    return new Uint8Array(buf);
  }

  // bodyView shows a captured body: JSON pretty-printed, text as text, anything else as a
  // hex dump; with its size, what was cut, a choice of views and a download.
  function bodyView(body, headers, id, filename) {
    body = body || { size: 0, truncated: false, base64: '' };
    const box = el('div', { class: 'body', id });
    const raw = bytesOf(body.base64);
    if (body.size === 0 && raw.length === 0) {
      box.append(el('div', { class: 'body-bar' }, el('span', { text: 'Body' }), el('span', { class: 'muted', text: 'empty' })));
      return box;
    }
    const ctype = header(headers, 'Content-Type');
    const encoding = header(headers, 'Content-Encoding').trim().toLowerCase();
    const fill = (bytes, decodedNote) => {
      const text = textOf(bytes, body.truncated);
      let json = null;
      if (text != null && (/[/+]json\b/i.test(ctype) || /^\s*[[{]/.test(text))) {
        try {
          JSON.parse(text);
          json = text;
        } catch (_) { /* not (complete) JSON */ }
      }
      const form = text != null && /application\/x-www-form-urlencoded/i.test(ctype);
      const modes = json != null ? ['JSON', 'Raw', 'Hex'] : form ? ['Form', 'Raw', 'Hex'] : text != null ? ['Text', 'Hex'] : ['Hex'];
      const pre = el('pre', { class: 'content' });
      const formBox = el('div');
      const hexNote = el('span', { class: 'muted' });
      const seg = el('span', { class: 'seg', role: 'group', 'aria-label': 'View' });
      const show = (mode) => {
        for (const b of seg.children) b.classList.toggle('on', b.textContent === mode);
        pre.className = 'content';
        pre.hidden = mode === 'Form';
        formBox.hidden = mode !== 'Form';
        hexNote.textContent = '';
        pre.dataset.mode = mode.toLowerCase();
        if (mode === 'JSON') {
          const parts = prettyJSON(json);
          if (json.length > HIGHLIGHT_LIMIT) {
            pre.textContent = parts.map((p) => p[1]).join('');
          } else {
            pre.replaceChildren(...parts.map(([cls, t]) => (cls ? el('span', { class: cls, text: t }) : t)));
          }
        } else if (mode === 'Raw' || mode === 'Text') {
          pre.textContent = text;
        } else if (mode === 'Hex') {
          pre.className = 'content hex';
          pre.replaceChildren(hexDump(bytes));
          if (body.size > HEX_LIMIT) hexNote.textContent = `showing 4 KiB of ${body.size} bytes`;
        } else if (mode === 'Form') {
          const tbody = el('tbody');
          for (const [k, v] of new URLSearchParams(text)) tbody.append(el('tr', {}, el('td', { text: k }), el('td', { text: v })));
          formBox.replaceChildren(el('table', { class: 'headers' }, tbody));
        }
      };
      for (const m of modes) seg.append(el('button', { type: 'button', text: m, onclick: () => show(m) }));
      const kind = json != null ? 'JSON' : form ? 'form' : text != null ? 'text' : 'binary';
      const bar = el('div', { class: 'body-bar' },
        el('span', { text: `Body · ${ctype || kind}` }),
        el('span', { class: 'muted', text: size(body.size) }),
        decodedNote ? el('span', { class: 'muted', text: decodedNote }) : null,
        body.truncated ? el('span', { class: 'warn trunc', text: `captured the first ${MAX_BODY === 1 << 20 ? '1 MiB' : size(MAX_BODY)} of ${body.size} bytes` }) : null,
        hexNote,
        el('span', { class: 'grow' }),
        seg,
        el('button', { type: 'button', class: 'dl', title: 'Save the captured bytes', text: 'Download', onclick: () => download(raw, filename, ctype) }));
      box.replaceChildren(bar, pre, formBox);
      show(modes[0]);
    };
    if (/^(gzip|deflate|br)$/.test(encoding) && window.DecompressionStream) {
      box.append(el('div', { class: 'body-bar', text: `Body · decoding ${encoding}…` }));
      decompress(raw, encoding).then(
        (plain) => fill(plain, `${encoding}: ${size(raw.length)} → ${size(plain.length)} decoded`),
        () => fill(raw, `${encoding}-encoded${body.truncated ? ' (cut, cannot decode)' : ''}`));
    } else {
      fill(raw, encoding && encoding !== 'identity' ? `${encoding}-encoded` : '');
    }
    return box;
  }

  function download(bytes, name, ctype) {
    const url = URL.createObjectURL(new Blob([bytes], { type: ctype || 'application/octet-stream' }));
    const a = el('a', { href: url, download: `${name}.bin` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---- replay -----------------------------------------------------------------

  async function sendReplay(payload) {
    state.pending = { of: payload.id, before: new Set(state.items.map((s) => s.id)), until: Date.now() + 10000 };
    const r = await fetch('/api/requests/http', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(payload),
    });
    if (r.status !== 204 && !r.ok) {
      state.pending = null;
      throw new Error(await apiError(r));
    }
    refresh().catch(() => {}); // the stream brings it too
  }

  async function replay(ex, btn) {
    if (btn) btn.disabled = true;
    try {
      await sendReplay({ id: ex.id });
      toast(`Replayed ${ex.request.method} ${ex.request.uri}`);
    } catch (err) {
      toast(`Replay failed: ${err.message}`, true);
    } finally {
      if (btn) btn.disabled = false;
    }
  }

  // headerLines is the editor's text for headers; Content-Length is left out, as the agent
  // sets it from the body that is sent.
  function headerLines(headers) {
    const lines = [];
    for (const k of Object.keys(headers || {}).sort()) {
      if (k.toLowerCase() === 'content-length') continue;
      for (const v of headers[k] || []) lines.push(`${k}: ${v}`);
    }
    return lines.join('\n');
  }

  // canonical is Go's http.CanonicalHeaderKey for plain names: content-type -> Content-Type.
  const canonical = (k) => (/^[A-Za-z0-9-]+$/.test(k)
    ? k.toLowerCase().replace(/(^|-)([a-z])/g, (_, d, c) => d + c.toUpperCase()) : k);

  function parseHeaders(text) {
    const out = {};
    text.split('\n').forEach((line, n) => {
      if (!line.trim()) return;
      const i = line.indexOf(':');
      const name = i > 0 ? line.slice(0, i).trim() : '';
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new Error(`headers line ${n + 1}: want “Name: value”`);
      const key = canonical(name);
      (out[key] = out[key] || []).push(line.slice(i + 1).trim());
    });
    return out;
  }

  function openEditor(ex) {
    state.editing = ex;
    const req = ex.request;
    ui.edOf.textContent = `Replays ${req.method} ${req.uri} (${ex.id}) through tunnel ${ex.tunnel_name}.`;
    ui.edMethod.value = req.method;
    ui.edURI.value = req.uri;
    ui.edHeaders.value = headerLines(req.headers);
    ui.edHeaders.dataset.orig = ui.edHeaders.value;
    const raw = bytesOf(req.body && req.body.base64);
    const text = raw.length === 0 ? '' : textOf(raw, req.body.truncated);
    if (text == null) {
      ui.edBody.value = '';
      ui.edBody.disabled = true;
      ui.edBody.placeholder = `binary body (${req.body.size} bytes): sent as recorded`;
      ui.edBodyNote.textContent = 'binary, not editable here';
    } else {
      ui.edBody.disabled = false;
      ui.edBody.placeholder = '(empty)';
      ui.edBody.value = text;
      ui.edBodyNote.textContent = req.body.truncated ? `only the first 1 MiB of ${req.body.size} bytes was captured: that is what is sent` : '';
    }
    ui.edBody.dataset.orig = ui.edBody.value;
    ui.edError.hidden = true;
    ui.edSend.disabled = false;
    ui.editor.showModal();
    ui.edURI.focus();
    ui.edURI.select();
  }

  async function submitEditor(ev) {
    ev.preventDefault();
    const ex = state.editing;
    if (!ex) return;
    const payload = { id: ex.id, method: ui.edMethod.value.trim(), uri: ui.edURI.value.trim() };
    try {
      if (!payload.method) throw new Error('method: required');
      if (!payload.uri.startsWith('/')) throw new Error('URI: want a path and query, e.g. /path?query');
      if (ui.edHeaders.value !== ui.edHeaders.dataset.orig) payload.headers = parseHeaders(ui.edHeaders.value);
      if (!ui.edBody.disabled && ui.edBody.value !== ui.edBody.dataset.orig) payload.body = ui.edBody.value;
      ui.edSend.disabled = true;
      await sendReplay(payload);
      ui.editor.close();
      toast(`Replayed ${payload.method} ${payload.uri}`);
    } catch (err) {
      ui.edError.textContent = err.message;
      ui.edError.hidden = false;
    } finally {
      ui.edSend.disabled = false;
    }
  }

  // ---- wiring -----------------------------------------------------------------

  ui.edForm.addEventListener('submit', submitEditor);
  ui.edCancel.addEventListener('click', () => ui.editor.close());
  ui.editor.addEventListener('close', () => { state.editing = null; });
  ui.filter.addEventListener('input', render);
  ui.clear.addEventListener('click', async () => {
    try {
      const r = await fetch('/api/requests/http', { method: 'DELETE' });
      if (!r.ok) throw new Error(await apiError(r));
      state.cache.clear();
      showPlaceholder();
      await refresh();
    } catch (err) {
      toast(`Clear failed: ${err.message}`, true);
    }
  });

  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || ui.editor.open) return;
    const t = e.target;
    if (t instanceof Element && t.closest('input, textarea, select, [contenteditable]')) {
      if (e.key === 'Escape' || ((e.key === 'ArrowDown' || e.key === 'Enter') && t === ui.filter)) {
        t.blur();
        if (e.key === 'ArrowDown') move(1);
        e.preventDefault();
      }
      return;
    }
    switch (e.key) {
      case 'j': case 'ArrowDown': move(1); break;
      case 'k': case 'ArrowUp': move(-1); break;
      case 'Home': if (state.visible.length) select(state.visible[0].id, true); break;
      case 'End': if (state.visible.length) select(state.visible[state.visible.length - 1].id, true); break;
      case 'r': if (state.shown) replay(state.shown, document.getElementById('replay')); break;
      case 'e': if (state.shown) openEditor(state.shown); break;
      case '/': ui.filter.focus(); break;
      default: return;
    }
    e.preventDefault();
  });

  connect();
  loadTunnels();
  setInterval(loadTunnels, 5000);
})();
