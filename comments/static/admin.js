/* The moderators' page, enhanced: keyboard shortcuts, actions without reloading, undo for a few seconds.
   Every action works without this file too (plain form posts). Nothing here ever inserts text a commenter
   wrote as HTML: messages go in with textContent, and comment items come from the server's own templates. */
(() => {
  'use strict';

  const UNDO_MS = 10000;
  const STATUSES = ['pending', 'approved', 'spam', 'trash'];
  const doc = document;
  const body = doc.body;
  const tab = body.dataset.tab || '';
  const queue = doc.getElementById('queue');
  const toast = doc.getElementById('adm-toast');
  const help = doc.getElementById('adm-help');
  const bulkForm = doc.getElementById('bulk');
  if (!queue || !toast || !bulkForm) return;  // not the queue page

  let current = null;
  let undo = null;    // {groups, removed: [{node, index}], timer}
  let inflight = 0;

  // form.getAttribute('action'), never form.action: a field named "action" shadows that property.
  const items = () => Array.from(queue.querySelectorAll(':scope > .adm-item'));
  const csrf = () => bulkForm.querySelector('input[name=csrf]').value;
  const back = () => bulkForm.querySelector('input[name=back]').value;

  function el(tag, text, className) {
    const node = doc.createElement(tag);
    if (text) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function setCurrent(item, focus = true) {
    if (current) current.classList.remove('adm-current');
    current = item || null;
    if (!current) return;
    current.classList.add('adm-current');
    if (focus) {
      current.focus({ preventScroll: true });
      current.scrollIntoView({ block: 'nearest' });
    }
  }

  function move(step) {
    const all = items();
    if (!all.length) return;
    const at = all.indexOf(current);
    setCurrent(all[at < 0 ? 0 : Math.min(all.length - 1, Math.max(0, at + step))]);
  }

  function say(text, kind = 'ok', options = {}) {
    toast.replaceChildren(el('span', text));
    toast.className = `adm-toast adm-toast-${kind}`;
    if (options.undo) {
      const button = el('button', 'Undo', 'adm-link');
      button.type = 'button';
      button.id = 'adm-undo';
      button.addEventListener('click', () => runUndo());
      toast.append(' ', button);
    }
    if (options.signIn) {
      const link = el('a', 'Sign in again');
      link.href = '/admin/signin?ended=expired';
      toast.append(' ', link);
    }
    toast.hidden = false;
  }

  function bump(status, delta) {
    if (!STATUSES.includes(status)) return;
    const count = doc.querySelector(`[data-count="${status}"]`);
    if (count) count.textContent = String(Math.max(0, (parseInt(count.textContent, 10) || 0) + delta));
  }

  async function send(url, params) {
    inflight += 1;
    try {
      let response;
      try {
        response = await fetch(url, {
          method: 'POST', body: params, credentials: 'same-origin',
          headers: { Accept: 'application/json', 'X-CSRF-Token': csrf() },
        });
      } catch (_) {
        throw Object.assign(new Error('The service did not answer. Nothing was changed; try again.'), { status: 0 });
      }
      let data = {};
      try { data = await response.json(); } catch (_) { /* not JSON */ }
      if (!response.ok) {
        const error = data.error || {};
        throw Object.assign(new Error(error.message || `The service answered ${response.status}.`),
          { status: response.status, error });
      }
      return data;
    } finally {
      inflight -= 1;
    }
  }

  function failed(error) {
    say(error.message, 'error', { signIn: error.status === 401 });
  }

  /* Take items out of the list at once (the next one becomes current); returns what undo needs. */
  function detach(nodes) {
    const all = items();
    const removed = [];
    let next = null;
    for (const node of nodes) {
      const index = all.indexOf(node);
      if (index < 0) continue;
      removed.push({ node, index });
      if (node === current) next = index;
    }
    removed.forEach(({ node }) => node.remove());
    const rest = items();
    if (next !== null || !rest.includes(current)) {
      setCurrent(rest.length ? rest[Math.min(next === null ? 0 : next - removed.filter(r => r.index < next).length,
        rest.length - 1)] : null);
    }
    showEmpty();
    return removed;
  }

  function reattach(removed) {
    const sorted = [...removed].sort((a, b) => a.index - b.index);
    for (const { node, index } of sorted) {
      const all = items();
      if (index < all.length) queue.insertBefore(node, all[index]); else queue.append(node);
    }
    showEmpty();
    if (sorted.length) setCurrent(sorted[0].node);
  }

  function showEmpty() {
    const empty = doc.getElementById('adm-empty');
    if (empty) empty.hidden = items().length > 0;
  }

  /* The list ran out: load what is left (the same URL) once no action is still on its way. */
  async function refill() {
    if (inflight > 0 || items().length || !doc.getElementById('adm-next')) return;
    try {
      const response = await fetch(location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } });
      if (!response.ok || items().length) return;
      const fresh = new DOMParser().parseFromString(await response.text(), 'text/html');
      const list = fresh.getElementById('queue');
      if (!list) return;
      for (const node of Array.from(list.children)) queue.append(doc.adoptNode(node));
      for (const id of ['adm-empty']) {
        const mine = doc.getElementById(id);
        const theirs = fresh.getElementById(id);
        if (mine && theirs) mine.hidden = theirs.hidden;
      }
      const paging = doc.querySelector('.adm-paging');
      const freshPaging = fresh.querySelector('.adm-paging');
      if (paging && freshPaging) paging.replaceWith(doc.adoptNode(freshPaging));
      setCurrent(items()[0]);
    } catch (_) { /* the links still work */ }
  }

  function remember(groups, removed) {
    if (undo) clearTimeout(undo.timer);
    undo = groups.length ? { groups, removed, timer: setTimeout(forgetUndo, UNDO_MS) } : null;
  }

  function forgetUndo() {
    undo = null;
    const button = doc.getElementById('adm-undo');
    if (button) button.remove();
  }

  async function runUndo() {
    if (!undo) { say('There is nothing to undo.', 'info'); return; }
    const { groups, removed, timer } = undo;
    clearTimeout(timer);
    undo = null;
    try {
      const back = [];
      for (const group of groups) {
        const params = new URLSearchParams({ csrf: csrf(), action: 'status', to: group.to, from_status: group.from_status });
        group.ids.forEach(id => params.append('ids', String(id)));
        const data = await send('/admin/bulk', params);
        for (const [id, from, to] of data.changed) {
          bump(from, -1);
          bump(to, 1);
          if (to === tab) back.push(...removed.filter(r => r.node.dataset.id === String(id)));
        }
      }
      reattach(back);
      say('Undone.', 'ok');
    } catch (error) {
      failed(error);
    }
  }

  /* One comment: approve, spam, trash... The item leaves the list at once; it comes back if the service refuses. */
  async function act(item, action) {
    const form = item.querySelector('form.adm-actions');
    if (!form || !form.querySelector(`button[value="${action}"]`)) {
      say('That action is not offered for this comment here.', 'info');
      return;
    }
    if (action === 'delete' && !window.confirm('Delete this comment for good? This cannot be undone.')) return;
    const params = new URLSearchParams(new FormData(form));
    params.set('action', action);
    if (action === 'delete') params.set('confirm', 'yes');
    const removed = detach([item]);
    try {
      const data = await send(form.getAttribute('action'), params);
      bump(data.from, -1);
      if (data.to) bump(data.to, 1);
      if (data.to === tab) reattach(removed);
      remember(data.undo || [], removed);
      say(data.message, 'ok', { undo: (data.undo || []).length > 0 });
    } catch (error) {
      if (error.status === 409 || error.status === 404) {
        bump(tab, -1);
        if (error.error && error.error.current) bump(error.error.current, 1);
      } else {
        reattach(removed);
      }
      failed(error);
    }
    showEmpty();
    refill();
  }

  async function bulk(action, ids) {
    const nodes = ids.map(id => doc.getElementById(`comment-${id}`)).filter(Boolean);
    const params = new URLSearchParams({ csrf: csrf(), action, from_status: tab, back: back() });
    ids.forEach(id => params.append('ids', id));
    const removed = detach(nodes);
    try {
      const data = await send('/admin/bulk', params);
      const stay = new Set();
      for (const [id, from, to] of data.changed) {
        bump(from, -1);
        bump(to, 1);
        if (to === tab) stay.add(String(id));
      }
      for (const [, now] of data.moved) { bump(tab, -1); bump(now, 1); }
      data.missing.forEach(() => bump(tab, -1));
      reattach(removed.filter(r => stay.has(r.node.dataset.id)));
      removed.forEach(r => { const box = r.node.querySelector('input[name=ids]'); if (box) box.checked = false; });
      remember(data.undo || [], removed);
      say(data.message, 'ok', { undo: (data.undo || []).length > 0 });
    } catch (error) {
      reattach(removed);
      failed(error);
    }
    syncSelectAll();
    showEmpty();
    refill();
  }

  function selectedIds() {
    return Array.from(queue.querySelectorAll('input[name=ids]:checked')).map(box => box.value);
  }

  /* a, s, t: on the selection if there is one, else on the current comment. */
  function shortcut(choices) {
    const selected = selectedIds();
    if (selected.length) {
      const offered = Array.from(bulkForm.querySelectorAll('select[name=action] option')).map(o => o.value);
      const action = choices.find(c => offered.includes(c));
      if (action) bulk(action, selected); else say('That action is not offered for a selection here.', 'info');
      return;
    }
    if (!current) return;
    const action = choices.find(c => current.querySelector(`form.adm-actions button[value="${c}"]`));
    if (action) act(current, action); else say('That action is not offered for this comment here.', 'info');
  }

  function openPart(selector) {
    if (!current) return;
    const details = current.querySelector(selector);
    if (!details) return;
    details.open = true;
    const field = details.querySelector('textarea');
    if (field) field.focus();
  }

  function toggleHelp(show) {
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
    if (!help.hidden) help.querySelector('button').focus();
    else if (current) current.focus({ preventScroll: true });
  }

  /* Edit and reply: the answer carries the comment as the server renders it. */
  async function submitEdit(form) {
    const item = form.closest('.adm-item');
    try {
      const data = await send(form.getAttribute('action'), new URLSearchParams(new FormData(form)));
      const fresh = new DOMParser().parseFromString(data.html, 'text/html').body.firstElementChild;
      if (fresh && item) {
        const node = doc.adoptNode(fresh);
        item.replaceWith(node);
        setCurrent(node);
      }
      say(data.message, 'ok');
    } catch (error) {
      failed(error);
    }
  }

  async function submitReply(form) {
    const item = form.closest('.adm-item');
    try {
      const data = await send(form.getAttribute('action'), new URLSearchParams(new FormData(form)));
      bump('approved', 1);
      if (data.from !== data.to) {
        bump(data.from, -1);
        bump(data.to, 1);
        if (item && data.to !== tab) detach([item]);
      } else {
        form.reset();
        form.closest('details').open = false;
        if (item) setCurrent(item);
      }
      say(data.message, 'ok');
    } catch (error) {
      failed(error);
    }
    showEmpty();
    refill();
  }

  doc.addEventListener('submit', (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.matches('form.adm-actions')) {
      event.preventDefault();
      const button = event.submitter;
      if (button && button.value) act(form.closest('.adm-item'), button.value);
    } else if (form === bulkForm) {
      event.preventDefault();
      const ids = selectedIds();
      if (!ids.length) { say('Select comments first: tick their boxes, or press x on each.', 'info'); return; }
      bulk(form.querySelector('select[name=action]').value, ids);
    } else if (form.matches('form.adm-edit-form')) {
      event.preventDefault();
      submitEdit(form);
    } else if (form.matches('form.adm-reply-form')) {
      event.preventDefault();
      submitReply(form);
    }
  });

  queue.addEventListener('click', (event) => {
    const item = event.target instanceof Element ? event.target.closest('.adm-item') : null;
    if (item && item !== current) setCurrent(item, false);
  });

  /* "Select all on this page", only with JavaScript. */
  const all = el('input');
  all.type = 'checkbox';
  all.id = 'adm-select-all';
  const allLabel = el('label', ' Select all');
  allLabel.prepend(all);
  allLabel.className = 'adm-select-all';
  bulkForm.prepend(allLabel);
  all.addEventListener('change', () => {
    queue.querySelectorAll('input[name=ids]').forEach(box => { box.checked = all.checked; });
  });
  queue.addEventListener('change', syncSelectAll);
  function syncSelectAll() {
    const boxes = queue.querySelectorAll('input[name=ids]');
    all.checked = boxes.length > 0 && Array.from(boxes).every(box => box.checked);
  }

  const keys = doc.getElementById('adm-keys');
  if (keys) { keys.hidden = false; keys.addEventListener('click', () => toggleHelp()); }
  const close = doc.getElementById('adm-help-close');
  if (close) close.addEventListener('click', () => toggleHelp(false));

  const TEXT_INPUTS = /^(text|search|url|email|password|number)$/;

  doc.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    const typing = target instanceof HTMLElement && (target.isContentEditable || target.tagName === 'TEXTAREA'
      || target.tagName === 'SELECT' || (target.tagName === 'INPUT' && TEXT_INPUTS.test(target.type)));
    if (event.key === 'Escape') {
      if (help && !help.hidden) { toggleHelp(false); event.preventDefault(); return; }
      const open = target instanceof Element ? target.closest('details[open]') : null;
      if (open) { open.open = false; setCurrent(open.closest('.adm-item')); event.preventDefault(); }
      return;
    }
    if (typing) return;
    switch (event.key) {
      case 'j': move(1); break;
      case 'k': move(-1); break;
      case 'a': shortcut(['approve']); break;
      case 's': shortcut(['spam', 'notspam']); break;
      case 't': shortcut(['trash', 'restore']); break;
      case 'p': shortcut(['unapprove', 'notspam', 'restore']); break;
      case '#': shortcut(['delete']); break;
      case 'u': runUndo(); break;
      case 'x':
        if (current) {
          const box = current.querySelector('input[name=ids]');
          if (box) { box.checked = !box.checked; syncSelectAll(); }
        }
        break;
      case 'e': openPart('details.adm-edit'); break;
      case 'r': openPart('details.adm-reply'); break;
      case '/': { const search = doc.getElementById('adm-search'); if (search) search.focus(); break; }
      case '?': toggleHelp(); break;
      default: return;
    }
    event.preventDefault();
  });

  body.classList.add('adm-js');
  setCurrent(items()[0], false);
})();
