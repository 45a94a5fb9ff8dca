-- A small Isso database for the importer's tests, built with executescript.
-- The tables have the columns Isso itself creates; every name, address and text is
-- invented (.example domains, documentation address ranges, anonymised the way Isso
-- stores them: the last IPv4 octet zeroed). Times are UNIX seconds (UTC) as floats.
-- Modes: 1 public, 2 waiting in moderation, 4 deleted (text emptied when it has replies).

CREATE TABLE preferences (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE threads (id INTEGER PRIMARY KEY, uri VARCHAR(256) UNIQUE, title VARCHAR(256));
CREATE TABLE comments (
    tid REFERENCES threads(id), id INTEGER PRIMARY KEY, parent INTEGER,
    created FLOAT NOT NULL, modified FLOAT, mode INTEGER, remote_addr VARCHAR,
    text VARCHAR, author VARCHAR, email VARCHAR, website VARCHAR,
    likes INTEGER DEFAULT 0, dislikes INTEGER DEFAULT 0, voters BLOB NOT NULL,
    notification INTEGER NOT NULL DEFAULT 0);

-- Isso writes its session key as hex bytes, so SQLite keeps it as a BLOB.
INSERT INTO preferences VALUES ('session-key', CAST('5e55103c0ffee5e55103c0ffee5e5510' AS BLOB));

INSERT INTO threads VALUES (1, '/2023/01/russia-casualties/', 'Counting the cost');
INSERT INTO threads VALUES (2, '/2023/02/winter-notes/', 'Winter notes');

-- 1: public, top level, Markdown, a website without a scheme, a fractional time.
INSERT INTO comments VALUES (1, 1, NULL, 1673773920.5, NULL, 1, '192.0.2.0',
    'Thanks for pulling the numbers together.

Which **sources** did you use?', 'Ann Example', 'ann@example.net', 'ann.example.net', 2, 0, x'00', 0);
-- 2: public reply to 1, anonymous (no author, no email), unicode.
INSERT INTO comments VALUES (1, 2, 1, 1673779205.0, NULL, 1, '2001:db8::',
    'Спасибо! Ευχαριστώ · ありがとう 🙏', NULL, NULL, NULL, 0, 0, x'00', 0);
-- 3: waiting in moderation.
INSERT INTO comments VALUES (1, 3, NULL, 1673852400.0, NULL, 2, '198.51.100.0',
    'Your formula is off by one: `a[b[0]] > 1`', 'Dmitri', 'dmitri@example.com', NULL, 0, 0, x'00', 0);
-- 4: deleted while it had a reply: text emptied, author and website gone.
INSERT INTO comments VALUES (1, 4, 1, 1673860800.0, NULL, 4, '203.0.113.0',
    '', NULL, 'troll@example.com', NULL, 0, 0, x'00', 0);
-- 5: public reply to the deleted 4.
INSERT INTO comments VALUES (1, 5, 4, 1673861505.0, NULL, 1, '192.0.2.0',
    'Please keep it civil.', 'Ann Example', 'ann@example.net', 'https://ann.example.net/', 0, 0, x'00', 0);
-- 6: deleted but its text kept (as Isso's own Disqus import writes deleted posts).
INSERT INTO comments VALUES (1, 6, NULL, 1673863200.0, NULL, 4, '203.0.113.0',
    'This is all made up.', 'Troll', 'troll@example.com', NULL, 0, 0, x'00', 0);
-- 7: public, second thread.
INSERT INTO comments VALUES (2, 7, NULL, 1675368300.0, NULL, 1, '192.0.2.0',
    'Is there a printable version?
Asking for my reading group.', 'Łucja', 'lucja@mail.example.com', NULL, 0, 0, x'00', 0);
-- 8: its thread is gone.
INSERT INTO comments VALUES (99, 8, NULL, 1675414800.0, NULL, 1, '192.0.2.0',
    'Orphan.', 'Lost', 'lost@example.com', NULL, 0, 0, x'00', 0);
-- 9: an invalid email.
INSERT INTO comments VALUES (2, 9, NULL, 1675501200.0, NULL, 1, '192.0.2.0',
    'Nice.', 'Mallory', 'not-an-address', NULL, 0, 0, x'00', 0);
-- 10: a website that is not http(s): dropped with a warning, the comment kept.
INSERT INTO comments VALUES (2, 10, 7, 1675587600.0, NULL, 1, '192.0.2.0',
    'Yes, on the print page.', 'The Editor', 'editor@blog.example.com', 'javascript:alert(1)', 0, 0, x'00', 0);
