/* comments embed: the approved thread and the "Leave a Reply" form, from the public JSON API.
   <div id="comments" data-page="/2023/01/article/"></div> <script src="https://comments.example/embed.js" defer></script>
   Options (data-* on the container or the script): page, api, max-depth, per-page, edit-window (seconds).
   No inline styles or scripts; only body_html from the server becomes HTML, and only after an allowlist pass. */
(() => {
  const d = document, me = d.currentScript || d.querySelector('script[src*="embed.js"]');
  const OWN = 'cmt-own', SAVED = 'cmt-author', MSG = 'Your comment is awaiting moderation.';
  const get = k => { try { return JSON.parse(localStorage.getItem(k)) } catch (e) {} };
  const put = (k, v) => { try { v == null ? localStorage.removeItem(k) : localStorage.setItem(k, JSON.stringify(v)) } catch (e) {} };
  // h('p', 'cmt-x', kids…) or h('p', {attributes}, kids…): attributes by setAttribute, kids as text nodes or elements.
  const h = (tag, attrs, ...kids) => {
    const el = d.createElement(tag);
    attrs = typeof attrs == 'string' ? { class: attrs } : attrs;
    for (const k in attrs) if (attrs[k] != null) el.setAttribute(k, attrs[k]);
    el.append(...kids.flat().filter(x => x != null));
    return el;
  };
  const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  const ago = t => {
    let s = Math.min(0, (t - Date.now()) / 1e3);
    for (const [u, n] of [['second', 60], ['minute', 60], ['hour', 24], ['day', 30], ['month', 12], ['year', 1 / 0]]) {
      if (-s < n) return rtf.format(Math.round(s), u);
      s /= n;
    }
  };
  const TAGS = /^(A|ABBR|B|BLOCKQUOTE|BR|CITE|CODE|DEL|EM|I|P|PRE|Q|S|STRIKE|STRONG)$/;
  // The server sanitises body_html; this second pass keeps the same allowlist in case it ever does not.
  const clean = html => {
    const body = new DOMParser().parseFromString(html || '', 'text/html').body, f = d.createDocumentFragment();
    for (const el of [...body.querySelectorAll('*')].reverse()) {
      if (!TAGS.test(el.tagName)) { el.replaceWith(...(/^(SCRIPT|STYLE|TEMPLATE|TEXTAREA)$/.test(el.tagName) ? [] : el.childNodes)); continue; }
      for (const a of [...el.attributes]) {
        if (!/^(href|title|cite)$/.test(a.name) || (a.name != 'title' && !/^(https?|mailto):/i.test(a.value.trim()))) el.removeAttribute(a.name);
      }
      if (el.tagName == 'A') el.setAttribute('rel', 'nofollow ugc noopener');
    }
    f.append(...body.childNodes);
    return f;
  };

  function start() {
    const root = d.getElementById('comments') || d.querySelector('[data-comments]');
    if (!root) return;
    const o = { ...(me && me.dataset), ...root.dataset };
    const api = o.api ? o.api.replace(/\/*$/, '/') : new URL('.', me ? me.src : location.href).href;
    const page = o.page || location.pathname;
    const maxDepth = Math.max(1, +o.maxDepth || 5), perPage = Math.min(200, Math.max(1, +o.perPage || 50));
    const windowMs = (+o.editWindow || 900) * 1e3;
    let total = 0, cursor = null, parentId = null, tokenAt = 0;
    // One request to the public API; the answer carries its parsed JSON body as .j ({} when there is none).
    const call = async (path, method, body, token) => {
      const headers = { Accept: 'application/json' };
      if (body) headers['Content-Type'] = 'application/json';
      if (token) headers['X-Edit-Token'] = token;
      const r = await fetch(api + 'api/' + path, { method, headers, body: body && JSON.stringify(body) });
      r.j = await r.json().catch(() => ({}));
      return r;
    };
    const live = cls => h('p', { class: 'cmt-status ' + cls, role: 'status', 'aria-live': 'polite', tabindex: '-1' });
    const button = (cls, text) => h('button', { type: 'button', class: cls }, text);
    const OFFLINE = 'The connection failed. Please try again.';

    const title = h('h2', 'cmt-title');
    const list = h('ol', 'cmt-list');
    const moreBtn = button('cmt-more', 'More comments');
    const replyTitle = h('span', { id: 'cmt-reply-text' }, 'Leave a Reply');
    const cancel = h('a', { href: '#respond', class: 'cmt-cancel', hidden: '' }, 'Cancel reply');
    const status = live('');
    const send = h('button', { type: 'submit', class: 'cmt-button' }, 'Post Comment');
    const saveBox = h('input', { type: 'checkbox', id: 'cmt-save' });
    const notifyBox = h('input', { type: 'checkbox', id: 'cmt-notify', name: 'notify' });
    const token = h('input', { type: 'hidden', name: 'form_token' });
    const row = (name, label, req, type, auto, max) => h('p', 'cmt-field cmt-field-' + name,
      h('label', { for: 'cmt-' + name }, label, req ? [' ', h('span', { class: 'cmt-req', 'aria-hidden': 'true' }, '*')] : null), ' ',
      h(type ? 'input' : 'textarea', { id: 'cmt-' + name, name, type, rows: type ? null : 8, required: req ? '' : null, autocomplete: auto, maxlength: max }),
      h('span', { class: 'cmt-error', id: 'cmt-' + name + '-error', hidden: '' }));
    const form = h('form', { class: 'cmt-form', novalidate: '', 'aria-labelledby': 'cmt-reply-text' },
      h('p', 'cmt-notes', 'Your email address will not be published. Required fields are marked ', h('span', 'cmt-req', '*')),
      row('comment', 'Comment', 1),
      row('author', 'Name', 1, 'text', 'name', 245),
      row('email', 'Email', 1, 'email', 'email', 254),
      row('url', 'Website', 0, 'url', 'url', 200),
      h('p', { class: 'cmt-hp', 'aria-hidden': 'true' }, h('label', { for: 'cmt-homepage' }, 'Leave this field empty'),
        h('input', { type: 'text', id: 'cmt-homepage', name: 'homepage', tabindex: '-1', autocomplete: 'off', 'aria-hidden': 'true' })),
      token,
      h('p', 'cmt-cookies', saveBox, ' ', h('label', { for: 'cmt-save' }, 'Save my name, email, and website in this browser for the next time I comment.')),
      status, h('p', 'cmt-submit', send),
      h('p', 'cmt-notify', notifyBox, ' ', h('label', { for: 'cmt-notify' }, 'Notify me of follow-up comments by email.')));
    const respond = h('div', { id: 'respond', class: 'cmt-respond' },
      h('h3', { class: 'cmt-reply-title', id: 'cmt-reply-title' }, replyTitle, ' ', h('small', null, cancel)), form);
    const f = form.elements, val = k => f[k].value.trim();
    root.classList.add('cmt');
    moreBtn.hidden = true;
    root.replaceChildren(title, list, moreBtn, respond);

    const say = (text, bad) => { status.textContent = text; status.classList.toggle('cmt-status-error', !!bad); };
    const heading = () => { title.textContent = total ? total == 1 ? 'One Response' : total + ' Responses' : 'No Responses Yet'; };
    const own = () => get(OWN) || [];
    const forget = id => put(OWN, own().filter(m => m.id != id));

    // One comment as <li id="comment-ID">, under the <li> of its parent (beside it at the deepest level).
    function place(c, p, mine) {
      d.getElementById('comment-' + c.id)?.remove();
      let depth = 1, ol = list;
      if (p) {
        depth = +p.dataset.depth + 1;
        if (depth > maxDepth) { depth--; ol = p.parentNode; }
        else ol = p.querySelector(':scope>ol') || p.appendChild(h('ol', 'cmt-children'));
      }
      const when = new Date(c.created_at || Date.now()), pending = c.status && c.status != 'approved';
      const content = h('div', 'cmt-content', clean(c.body_html)), note = h('p', 'cmt-pending', MSG), actions = h('div', 'cmt-actions');
      const li = h('li', { id: 'comment-' + c.id, class: 'cmt-comment', 'data-depth': depth, tabindex: '-1' },
        h('article', 'cmt-body',
          h('footer', 'cmt-meta',
            h('b', 'cmt-author', /^https?:\/\/\S+$/i.test(c.url) ? h('a', { href: c.url, rel: 'nofollow ugc noopener', class: 'cmt-url' }, c.author) : c.author),
            ' ', h('span', 'cmt-says', 'says:'), ' ',
            h('a', { class: 'cmt-date', href: '#comment-' + c.id },
              h('time', { datetime: when.toISOString(), title: when.toLocaleString() }, ago(when)))),
          content, pending ? note : null, actions));
      if (!pending && depth < maxDepth) {
        const link = h('a', { href: '#respond', class: 'cmt-reply', 'aria-label': 'Reply to ' + c.author }, 'Reply');
        link.onclick = e => { e.preventDefault(); reply(c, li); };
        actions.append(link);
      }
      ol.append(li);
      const m = mine || own().find(x => x.id == c.id);
      if (m) controls(li, m, content, note);
      return li;
    }
    const walk = (items, p) => { for (const c of items || []) walk(c.replies, place(c, p)); };

    const setReply = (id, text, into, before) => { parentId = id; replyTitle.textContent = text; cancel.hidden = !id; into.insertBefore(respond, before); };
    const reply = (c, li) => { setReply(c.id, 'Reply to ' + c.author, li, li.firstChild.nextSibling); f.comment.focus(); };
    const unreply = () => {
      const back = parentId && d.querySelector('#comment-' + parentId + ' .cmt-reply');
      setReply(null, 'Leave a Reply', root, null);
      return back;
    };
    cancel.onclick = e => { e.preventDefault(); unreply()?.focus(); };

    // The author's own comment: Edit and Delete while the edit window lasts (or until the server says 403).
    function controls(li, m, content, note) {
      const left = m.created + windowMs - Date.now();
      if (left <= 0) return;
      const edit = button('cmt-edit', 'Edit'), del = button('cmt-delete', 'Delete');
      const box = h('div', 'cmt-own', edit, ' ', del), msg = live('cmt-own-status');
      li.firstChild.append(box, msg);
      const expire = () => { box.remove(); msg.textContent = 'The time for changing this comment is over.'; msg.focus(); };
      const timer = setTimeout(() => box.remove(), left);
      const fail = (r, what) => r.status == 403 ? expire() : msg.textContent = r.j.error?.message || 'Your ' + what;
      edit.onclick = () => {
        const ta = h('textarea', { class: 'cmt-edit-text', rows: 6, 'aria-label': 'Edit your comment' });
        const ok = button('cmt-button', 'Save'), no = button('cmt-cancel-edit', 'Cancel');
        const ed = h('div', 'cmt-editor', ta, h('p', null, ok, ' ', no));
        const close = () => { ed.remove(); content.hidden = box.hidden = false; };
        ta.value = m.body || content.textContent;
        content.hidden = box.hidden = true;
        content.after(ed);
        ta.focus();
        no.onclick = () => { close(); edit.focus(); };
        ok.onclick = async () => {
          ok.disabled = true;
          try {
            const r = await call('comments/' + m.id, 'PATCH', { body: ta.value }, m.edit_token);
            if (r.ok) {
              const was = note.isConnected;
              content.replaceChildren(clean(r.j.body_html));
              r.j.status == 'approved' ? note.remove() : content.after(note);
              if (was != note.isConnected) { total += was ? 1 : -1; heading(); }
              m.body = ta.value;
              close();
              edit.focus();
              msg.textContent = 'Your comment was updated.';
            } else { if (r.status == 403) close(); fail(r, 'change could not be saved.'); }
          } catch (e) { msg.textContent = OFFLINE; }
          ok.disabled = false;
        };
      };
      del.onclick = async () => {
        if (!confirm('Delete your comment?')) return;
        try {
          const r = await call('comments/' + m.id, 'DELETE', null, m.edit_token);
          if (r.ok || r.status == 404) {
            clearTimeout(timer);
            forget(m.id);
            if (!note.isConnected) { total--; heading(); }
            li.remove();
            say('Your comment was deleted.');
            status.focus();
          } else fail(r, 'comment could not be deleted.');
        } catch (e) { msg.textContent = OFFLINE; }
      };
    }

    async function more() {
      moreBtn.disabled = true;
      try {
        const r = await call('comments?' + new URLSearchParams({ page, limit: perPage, ...(cursor && { cursor }) }));
        if (!r.ok) throw r;
        total = r.j.total || 0;
        heading();
        walk(r.j.comments);
        cursor = r.j.next;
        moreBtn.hidden = !cursor;
        if (r.j.closed) form.replaceChildren(h('p', 'cmt-closed', 'Comments are closed on this page.'));
      } catch (e) { title.textContent = 'Comments could not be loaded.'; }
      moreBtn.disabled = false;
    }
    moreBtn.onclick = more;

    // This reader's comments that still wait for moderation, seen again with their edit tokens after a reload.
    async function mine() {
      for (const m of own().filter(x => x.page == page && !d.getElementById('comment-' + x.id))) {
        try {
          const r = await call('comments/' + m.id, 'GET', null, m.edit_token), c = r.j;
          if (r.ok && c.status != 'approved') place({ ...c, status: c.status || 'pending' }, c.parent && d.getElementById('comment-' + c.parent), { ...m, body: c.body });
          else if (r.status == 403 || r.status == 404) forget(m.id);
        } catch (e) {}
      }
    }

    // The signed form token, when the service offers one; posting works without it.
    async function refresh() {
      token.value = '';
      tokenAt = Date.now();
      try {
        const r = await call('form-token?page=' + encodeURIComponent(page));
        if (r.ok) token.value = r.j.token || '';
      } catch (e) {}
    }

    const FIELDS = { body: 'comment', comment: 'comment', author: 'author', email: 'email', url: 'url' };
    // Show each field's problem beside it; returns [first invalid field, problems of fields not in the form].
    function showErrors(fields) {
      let first = null, rest = [];
      for (const el of form.querySelectorAll('.cmt-error')) {
        const input = f[el.id.slice(4, -6)];
        el.hidden = true;
        input.removeAttribute('aria-invalid');
        input.removeAttribute('aria-describedby');
      }
      for (const k in fields) {
        const input = f[FIELDS[k]], el = input && d.getElementById(input.id + '-error');
        if (!el) { rest.push(fields[k]); continue; }
        el.textContent = fields[k];
        el.hidden = false;
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', el.id);
        first = first || input;
      }
      return [first, rest.join(' ')];
    }

    const saved = get(SAVED);
    if (saved) { for (const k of ['author', 'email', 'url']) f[k].value = saved[k] || ''; saveBox.checked = true; }
    saveBox.onchange = () => saveBox.checked || put(SAVED, null);

    form.onsubmit = async e => {
      e.preventDefault();
      if (send.disabled) return;
      const need = {};
      for (const k of ['comment', 'author', 'email']) if (!val(k)) need[k] = 'Please fill in this field.';
      const [bad] = showErrors(need);
      if (bad) { say('Please correct the marked fields.', 1); return bad.focus(); }
      put(SAVED, saveBox.checked ? { author: val('author'), email: val('email'), url: val('url') } : null);
      send.disabled = true;
      say('Sending your comment…');
      try {
        if (Date.now() - tokenAt > 6e5) await refresh();
        const r = await call('comments', 'POST', {
          page, body: val('comment'), author: val('author'), email: val('email'), url: val('url') || undefined,
          parent: parentId || undefined, homepage: f.homepage.value, form_token: token.value || undefined,
          notify: notifyBox.checked || undefined
        }), j = r.j, s = r.status, err = j.error || {};
        if (r.ok) {
          const m = { id: j.id, edit_token: j.edit_token, page, created: Date.now() };
          if (j.edit_token) put(OWN, [...own().filter(x => x.id != j.id), m].slice(-20));
          const p = parentId && d.getElementById('comment-' + parentId);
          unreply();
          place(j, p, j.edit_token && { ...m, body: val('comment') });
          if (j.status == 'approved') { total++; heading(); }
          f.comment.value = '';
          say(j.status == 'approved' ? 'Thank you! Your comment has been published.' : 'Thank you! ' + MSG);
          status.focus();
        } else {
          const [first, rest] = s == 422 && err.fields ? showErrors(err.fields) : [], wait = +r.headers.get('Retry-After');
          say(first ? ('Please correct the marked fields. ' + rest).trim() :
            s == 429 ? 'You are posting comments too quickly. Please wait ' + (wait ? wait + ' second' + (wait == 1 ? '' : 's') : 'a minute') + ' and try again.' :
            s == 409 ? 'You have already posted this comment.' :
            s == 403 && err.code != 'forbidden' ? 'Comments are closed on this page.' :
            s == 413 ? 'Your comment is too long.' :
            rest || err.message || 'Your comment could not be sent. Please try again later.', 1);
          (first || status).focus();
        }
      } catch (e) { say('Your comment could not be sent. ' + OFFLINE, 1); status.focus(); }
      send.disabled = false;
      refresh();
    };

    heading();
    refresh();
    more().then(mine);
  }
  d.readyState == 'loading' ? d.addEventListener('DOMContentLoaded', start) : start();
})();
