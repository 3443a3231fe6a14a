import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  EDITOR_ACTIONS,
  SERVER_ACTION_COMMANDS,
  buildActionArgs,
  errorDisposition,
  pilotfishCommands,
  summarizeActionResult,
  taskOf,
} from '../commands';

const uri = 'file:///src/db.rs';

test('a selection becomes {uri, range}', () => {
  const args = buildActionArgs(uri, { start: { line: 3, character: 4 }, end: { line: 9, character: 1 } });
  assert.deepEqual(args, { uri, range: { start: { line: 3, character: 4 }, end: { line: 9, character: 1 } } });
  assert.equal('action' in args, false);
});

test('a cursor is an empty range (the server takes the enclosing function)', () => {
  const p = { line: 41, character: 7 };
  assert.deepEqual(buildActionArgs(uri, { start: p, end: p }).range, { start: p, end: p });
});

test('a bottom-up selection is put in document order', () => {
  const args = buildActionArgs(uri, { start: { line: 9, character: 1 }, end: { line: 3, character: 4 } });
  assert.deepEqual(args.range, { start: { line: 3, character: 4 }, end: { line: 9, character: 1 } });
  const same = buildActionArgs(uri, { start: { line: 2, character: 8 }, end: { line: 2, character: 3 } });
  assert.deepEqual(same.range, { start: { line: 2, character: 3 }, end: { line: 2, character: 8 } });
});

test('a user action carries its name', () => {
  const p = { line: 0, character: 0 };
  assert.equal(buildActionArgs(uri, { start: p, end: p }, 'tests').action, 'tests');
  assert.equal('action' in buildActionArgs(uri, { start: p, end: p }, ''), false);
});

test('the editor commands do not reuse the server command ids (the client registers those)', () => {
  for (const [id, a] of Object.entries(EDITOR_ACTIONS)) {
    assert.ok(!(SERVER_ACTION_COMMANDS as readonly string[]).includes(id), id);
    assert.ok((SERVER_ACTION_COMMANDS as readonly string[]).includes(a.server), a.server);
  }
});

test('task names', () => {
  assert.equal(taskOf('pilotfish.explain'), 'Explain');
  assert.equal(taskOf('pilotfish.review'), 'Security review');
  assert.equal(taskOf('pilotfish.action', { uri, action: 'tests' }), 'tests');
  assert.equal(taskOf('pilotfish.action', {}), 'Action');
});

test('summaries of the server results', () => {
  assert.deepEqual(
    summarizeActionResult('Explain', { markdown: '# hi', model: 'mid', reason: 'default chain', attempts: [] }),
    { model: 'mid', reason: 'default chain', message: undefined },
  );
  assert.equal(summarizeActionResult('Security review', { findings: [], model: 'm' }).message, 'Security review: no findings');
  assert.equal(
    summarizeActionResult('Security review', { findings: [{}, {}], model: 'm' }).message,
    'Security review: 2 findings (see the Problems panel)',
  );
  assert.equal(summarizeActionResult('Refactor', { applied: true, model: 'm' }).message, undefined);
  assert.match(summarizeActionResult('Refactor', { applied: false, model: 'm' }).message ?? '', /did not apply/);
  assert.deepEqual(summarizeActionResult('Explain', null), {});
});

test('the pilotfish entries of a codeAction answer', () => {
  const answer = [
    { title: 'Pilotfish: Explain', kind: 'source.pilotfish.explain', command: { title: 'Pilotfish: Explain', command: 'pilotfish.explain', arguments: [{ uri }] } },
    { title: 'Write unit tests', command: { title: 'Write unit tests', command: 'pilotfish.action', arguments: [{ uri, action: 'tests' }] } },
    { title: 'Bare command', command: 'pilotfish.review', arguments: [{ uri }] },
    { title: 'Someone else', command: { title: 'x', command: 'rust-analyzer.run' } },
    { title: 'An edit only', edit: {} },
  ];
  assert.deepEqual(pilotfishCommands(answer).map((c) => [c.title, c.command]), [
    ['Pilotfish: Explain', 'pilotfish.explain'],
    ['Write unit tests', 'pilotfish.action'],
    ['Bare command', 'pilotfish.review'],
  ]);
  assert.deepEqual(pilotfishCommands(null), []);
});

test('errors: the server already shows RequestFailed; cancels are quiet', () => {
  assert.deepEqual(errorDisposition({ code: -32803, message: 'Explain: no model answered' }), {
    status: 'failed', show: false, message: 'Explain: no model answered',
  });
  assert.equal(errorDisposition({ code: -32602, message: 'bad params' }).show, true);
  assert.equal(errorDisposition({ code: -32800, message: 'cancelled' }).status, 'cancelled');
  assert.equal(errorDisposition({ name: 'Canceled', message: 'Canceled' }).status, 'cancelled');
  assert.equal(errorDisposition('boom').message, 'boom');
});
