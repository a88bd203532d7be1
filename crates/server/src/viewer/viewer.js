// trailkeep viewer: lists one tenant's events through the token-authenticated /viewer/api
// endpoints. No dependencies, no inline code (the page's Content-Security-Policy allows only
// this file); everything shown is set with textContent, never parsed as HTML.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(window.location.search).get('token') || '';
  const PAGE = 50;
  const state = { cursor: null, loading: false, done: false, filters: {}, selected: null, stopped: false, shown: 0 };

  function showNotice(title, text) {
    state.stopped = true;
    $('notice-title').textContent = title;
    $('notice-text').textContent = text;
    $('notice').hidden = false;
    $('app').hidden = true;
    document.body.dataset.state = 'error';
  }

  // Calls a viewer endpoint; a 401 (expired or invalid token) replaces the page with a notice.
  async function api(path, params) {
    const url = new URL(path, window.location.href);
    url.searchParams.set('token', token);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
    }
    let resp;
    try {
      resp = await fetch(url, { headers: { Accept: 'application/json' }, credentials: 'omit', cache: 'no-store' });
    } catch (e) {
      throw new Error('the server could not be reached; check the connection and reload');
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (resp.status === 401) {
      const msg = body && body.error ? body.error.message : 'this link is not valid';
      showNotice('This link cannot be used', msg);
      throw new Error(msg);
    }
    if (!resp.ok) {
      const msg = body && body.error ? body.error.message : 'the server answered ' + resp.status;
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function plural(n) {
    return n === 1 ? '1 event' : n + ' events';
  }

  function fmtTime(ts) {
    return typeof ts === 'string' ? ts.replace('T', ' ').replace('Z', '') : '';
  }

  // ------------------------------------------------------------------------------------------
  // The list.

  function readFilters() {
    const f = {};
    const type = $('f-type').value.trim();
    const actor = $('f-actor').disabled ? '' : $('f-actor').value.trim();
    const q = $('f-q').value.trim();
    if (type) f.event_type = type;
    if (actor) f.actor = actor;
    if (q) f.q = q;
    for (const [id, key] of [['f-since', 'since'], ['f-until', 'until']]) {
      const v = $(id).value;
      if (v) {
        const d = new Date(v + 'Z'); // UTC, as the list shows times
        if (isNaN(d.getTime())) throw new Error('invalid ' + key + ' time');
        f[key] = d.toISOString();
      }
    }
    return f;
  }

  function resetList() {
    state.cursor = null;
    state.done = false;
    state.shown = 0;
    $('rows').textContent = '';
    $('list-status').textContent = '';
    $('more').hidden = true;
  }

  function addRow(ev) {
    const tr = el('tr');
    tr.tabIndex = 0;
    tr.dataset.eventId = ev.event_id;
    tr.appendChild(el('td', 'time', fmtTime(ev.timestamp)));
    tr.appendChild(el('td', 'type', ev.event_type));
    tr.appendChild(el('td', 'actor', ev.actor));
    tr.appendChild(el('td', 'seq', String(ev.seq)));
    const open = () => openDetail(ev.event_id, tr);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } });
    $('rows').appendChild(tr);
  }

  async function loadMore() {
    if (state.loading || state.done || state.stopped) return;
    state.loading = true;
    $('list-status').textContent = 'Loading…';
    try {
      const params = Object.assign({ limit: PAGE }, state.filters);
      if (state.cursor) params.cursor = state.cursor;
      const page = await api('viewer/api/events', params);
      for (const ev of page.events) addRow(ev);
      state.shown += page.events.length;
      state.cursor = page.next_cursor;
      state.done = !page.next_cursor;
      $('list-status').textContent = state.done
        ? (state.shown === 0 ? 'No events match.' : plural(state.shown) + ' · end of the log')
        : plural(state.shown) + ' shown · scroll for more';
      $('more').hidden = state.done;
      $('filter-error').hidden = true;
    } catch (e) {
      if (!state.stopped) {
        $('list-status').textContent = '';
        $('filter-error').textContent = e.message;
        $('filter-error').hidden = false;
      }
    } finally {
      state.loading = false;
      document.body.dataset.loaded = String(state.shown);
    }
    // Fill the visible list: the sentinel may still be in view.
    if (!state.done && !state.stopped && sentinelVisible()) loadMore();
  }

  function sentinelVisible() {
    const list = document.querySelector('.list');
    const s = $('sentinel').getBoundingClientRect();
    const l = list.getBoundingClientRect();
    return s.top <= l.bottom + 200;
  }

  // ------------------------------------------------------------------------------------------
  // The detail: metadata, the before → after diff, the proof status.

  // Flattens JSON into path → leaf value ("a.b[2].c").
  function flatten(v, prefix, out) {
    if (v !== null && typeof v === 'object') {
      const entries = Array.isArray(v) ? v.map((x, i) => ['[' + i + ']', x]) : Object.keys(v).sort().map((k) => ['.' + k, v[k]]);
      if (entries.length === 0) { out.set(prefix || '(value)', v); return out; }
      for (const [k, x] of entries) flatten(x, prefix + k, out);
      return out;
    }
    out.set(prefix || '(value)', v);
    return out;
  }

  // Rows {path, before, after, kind} for two JSON values.
  function diff(before, after) {
    const strip = (m) => new Map([...m].map(([k, v]) => [k.replace(/^\./, ''), v]));
    const a = strip(flatten(before, '', new Map()));
    const b = strip(flatten(after, '', new Map()));
    const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
    return keys.map((k) => {
      const inA = a.has(k), inB = b.has(k);
      const kind = !inA ? 'added' : !inB ? 'removed' : JSON.stringify(a.get(k)) === JSON.stringify(b.get(k)) ? 'unchanged' : 'changed';
      return { path: k, before: inA ? JSON.stringify(a.get(k)) : '', after: inB ? JSON.stringify(b.get(k)) : '', kind };
    });
  }

  function showDiff(payload) {
    const rows = $('diff-rows');
    rows.textContent = '';
    const has = payload && typeof payload === 'object' && !Array.isArray(payload) && ('before' in payload || 'after' in payload);
    if (!has) {
      $('diff').hidden = true;
      $('diff-note').textContent = payload === null ? 'The payload was purged (retention or erasure); its commitment still proves the event.' : 'This event has no before/after in its payload.';
      $('diff-note').hidden = false;
      return;
    }
    const d = diff(payload.before === undefined ? {} : payload.before, payload.after === undefined ? {} : payload.after);
    const changed = d.filter((r) => r.kind !== 'unchanged').length;
    $('diff-note').textContent = changed === 0 ? 'before and after are identical.' : changed + ' field(s) differ.';
    $('diff-note').hidden = false;
    for (const r of d) {
      const tr = el('tr', r.kind);
      tr.appendChild(el('td', 'path', r.path));
      tr.appendChild(el('td', 'before', r.before));
      tr.appendChild(el('td', 'after', r.after));
      tr.title = r.kind;
      rows.appendChild(tr);
    }
    $('diff').hidden = false;
  }

  function showProof(p) {
    const box = $('proof');
    box.className = 'proof ' + p.status;
    box.dataset.status = p.status;
    $('proof-badge').textContent = p.status === 'verified' ? '✓ Verified' : p.status === 'pending' ? 'Pending' : '✗ Failed';
    $('proof-text').textContent = p.message;
  }

  async function loadProof(id, attempt) {
    try {
      const p = await api('viewer/api/events/' + encodeURIComponent(id) + '/proof');
      if (state.selected !== id) return;
      showProof(p);
      if (p.status === 'pending' && attempt < 10) setTimeout(() => loadProof(id, attempt + 1), 1500);
    } catch (e) {
      if (state.selected === id && !state.stopped) showProof({ status: 'failed', message: 'the proof could not be fetched: ' + e.message });
    }
  }

  async function openDetail(id, tr) {
    if (state.stopped) return;
    state.selected = id;
    for (const r of document.querySelectorAll('#rows tr.selected')) r.classList.remove('selected');
    if (tr) tr.classList.add('selected');
    $('detail').hidden = false;
    $('d-type').textContent = '…';
    $('d-meta').textContent = '';
    $('d-payload').textContent = '';
    $('diff').hidden = true;
    $('diff-note').hidden = true;
    showProof({ status: 'pending', message: 'checking…' });
    $('proof-badge').textContent = 'Checking proof…';
    let ev;
    try {
      ev = await api('viewer/api/events/' + encodeURIComponent(id));
    } catch (e) {
      if (!state.stopped) $('d-type').textContent = e.message;
      return;
    }
    if (state.selected !== id) return;
    $('d-type').textContent = ev.event_type;
    const meta = $('d-meta');
    const fields = [['Event id', ev.event_id], ['Time', ev.timestamp], ['Received', ev.received_at], ['Actor', ev.actor],
      ['Tenant', ev.tenant_id], ['Seq', String(ev.seq)], ['Source IP', ev.source_ip], ['Session', ev.impersonation_session],
      ['Approval', ev.approval_id], ['Leaf hash', ev.leaf_hash]];
    for (const [k, v] of fields) {
      if (v === undefined || v === null) continue;
      meta.appendChild(el('dt', '', k));
      meta.appendChild(el('dd', '', v));
    }
    showDiff(ev.payload);
    $('d-payload').textContent = ev.payload === null ? '(purged)' : JSON.stringify(ev.payload, null, 2);
    loadProof(id, 0);
  }

  // ------------------------------------------------------------------------------------------
  // Start.

  async function start() {
    if (!token) {
      showNotice('This link has no viewer token', 'Open the viewer with the full link you were given (it ends in ?token=…).');
      return;
    }
    let s;
    try {
      s = await api('viewer/api/session');
    } catch (e) {
      if (!state.stopped) showNotice('The audit log cannot be shown', e.message);
      return;
    }
    $('scope-tenant').textContent = s.tenant_id;
    $('scope-expires').textContent = fmtTime(s.expires_at);
    if (s.actor) {
      $('scope-actor').textContent = s.actor;
      $('scope-actor-chip').hidden = false;
      $('f-actor').value = s.actor;
      $('f-actor').disabled = true;
    }
    $('scope').hidden = false;
    $('app').hidden = false;
    document.body.dataset.state = 'ready';

    $('filters').addEventListener('submit', (e) => {
      e.preventDefault();
      try {
        state.filters = readFilters();
      } catch (err) {
        $('filter-error').textContent = err.message;
        $('filter-error').hidden = false;
        return;
      }
      resetList();
      loadMore();
    });
    $('f-reset').addEventListener('click', () => {
      for (const id of ['f-type', 'f-since', 'f-until', 'f-q']) $(id).value = '';
      if (!$('f-actor').disabled) $('f-actor').value = '';
      state.filters = {};
      resetList();
      loadMore();
    });
    $('more').addEventListener('click', () => loadMore());
    $('d-close').addEventListener('click', () => {
      state.selected = null;
      $('detail').hidden = true;
      for (const r of document.querySelectorAll('#rows tr.selected')) r.classList.remove('selected');
    });
    const list = document.querySelector('.list');
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    }, { root: list, rootMargin: '0px 0px 200px 0px' }).observe($('sentinel'));
    resetList();
    loadMore();
  }

  start();
})();
