// The listings' tables. A view describes one: caption, columns, a stable key per item, a label naming an
// item in buttons and messages, and actions (buttons on each row). Cells are set with textContent only.

import { fmtBytes, fmtCount, fmtNumber, fmtSince, fmtUntil, fmtValue, fullTime } from './format.js';

// A column is [header, value of an item, options]: fmt formats the value (fmtValue by default), num
// aligns it right, title gives the cell a tooltip (the full time, or the whole list).
export const col = (header, get, opts = {}) => ({ header, get, ...opts });
export const num = { fmt: fmtNumber, num: true };
export const bytes = { fmt: fmtBytes, num: true };
export const since = { fmt: fmtSince, title: fullTime };
export const until = { fmt: fmtUntil, title: fullTime };
export const count = { fmt: fmtCount, num: true, title: (v) => (Array.isArray(v) ? v.join('\n') : '') };

// buildTable puts a view's table, empty note and pager into holder, once. onPage is called after the
// pager changed view.state.page, onAction(view, action, item) when an action's button is clicked.
export function buildTable(holder, view, onPage, onAction) {
  const wrap = document.createElement('div');
  wrap.className = 'table-wrap';
  const table = document.createElement('table');
  const caption = table.createCaption();
  caption.className = 'sr-only';
  caption.textContent = view.caption;
  const tr = table.createTHead().insertRow();
  for (const c of view.columns) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = c.header;
    if (c.num) th.className = 'num';
    tr.append(th);
  }
  if (view.actions.length) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.className = 'actions';
    const span = document.createElement('span');
    span.className = 'sr-only';
    span.textContent = 'Actions';
    th.append(span);
    tr.append(th);
  }
  const tbody = table.createTBody();
  wrap.append(table);
  const empty = document.createElement('p');
  empty.className = 'empty';
  empty.textContent = view.empty;
  empty.hidden = true;
  const pager = document.createElement('div');
  pager.className = 'pager';
  const info = document.createElement('span');
  const prev = button('Previous page', () => {
    view.state.page--;
    onPage();
  });
  const next = button('Next page', () => {
    view.state.page++;
    onPage();
  });
  pager.append(info, prev, next);
  pager.hidden = true;
  holder.replaceChildren(wrap, empty, pager);
  view.state = { page: 1, rows: new Map(), tbody, empty, pager, info, prev, next, onAction };
}

export function button(text, onclick, className) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  if (className) b.className = className;
  b.addEventListener('click', onclick);
  return b;
}

// renderRows shows items in a view's table. Rows are keyed: a refresh updates the cells of a row that
// stays, so its buttons (and the focus on one) survive the poll.
export function renderRows(view, items) {
  const st = view.state;
  const seen = new Set();
  let i = 0;
  for (const item of items) {
    const k = view.key(item);
    if (seen.has(k)) continue;
    seen.add(k);
    let row = st.rows.get(k);
    if (!row) {
      row = createRow(view);
      st.rows.set(k, row);
    }
    row.item = item;
    updateRow(view, row, item);
    const at = st.tbody.rows[i];
    if (at !== row) st.tbody.insertBefore(row, at || null);
    i++;
  }
  for (const [k, row] of st.rows) {
    if (!seen.has(k)) {
      row.remove();
      st.rows.delete(k);
    }
  }
  st.empty.hidden = items.length > 0;
}

function createRow(view) {
  const tr = document.createElement('tr');
  for (const c of view.columns) {
    const td = tr.insertCell();
    if (c.num) td.className = 'num';
  }
  if (view.actions.length) {
    const td = tr.insertCell();
    td.className = 'actions';
    for (const a of view.actions) {
      td.append(button(a.label, () => view.state.onAction(view, a, tr.item), a.danger ? 'danger' : ''));
    }
  }
  return tr;
}

function updateRow(view, tr, item) {
  view.columns.forEach((c, i) => {
    const v = c.get(item);
    const td = tr.cells[i];
    const text = (c.fmt || fmtValue)(v);
    if (td.textContent !== text) td.textContent = text;
    const title = c.title ? c.title(v) : '';
    if (td.title !== title) td.title = title;
  });
  if (view.actions.length) {
    const name = view.label(item);
    const buttons = tr.cells[view.columns.length].children;
    view.actions.forEach((a, i) => {
      const b = buttons[i];
      b.hidden = a.when ? !a.when(item) : false;
      const label = `${a.label.replace('…', '')} ${name}`;
      if (b.getAttribute('aria-label') !== label) b.setAttribute('aria-label', label);
    });
  }
}

export function renderPager(view, page) {
  const st = view.state;
  const total = page.total || 0;
  const size = page.page_size || page.items.length || 1;
  const pages = Math.max(1, Math.ceil(total / size));
  st.pager.hidden = pages <= 1;
  const from = total ? (page.page - 1) * size + 1 : 0;
  st.info.textContent = `${fmtNumber(from)}–${fmtNumber(from + page.items.length - 1)} of ${fmtNumber(total)}`;
  st.prev.disabled = page.page <= 1;
  st.next.disabled = page.page >= pages;
}
