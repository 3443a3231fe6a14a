import { test } from 'node:test';
import assert from 'node:assert/strict';

import { acceptInfoOf, formatDuration, formatStatus, formatStatusWithStats, itemCount, shortModel, statsSummary } from '../status';

test('durations', () => {
  assert.equal(formatDuration(0), '0 ms');
  assert.equal(formatDuration(84.4), '84 ms');
  assert.equal(formatDuration(999.4), '999 ms');
  assert.equal(formatDuration(1234), '1.2 s');
  assert.equal(formatDuration(12_345), '12 s');
  assert.equal(formatDuration(125_000), '2 min 5 s');
  assert.equal(formatDuration(Number.NaN), '? ms');
});

test('a model answer names the model and the time', () => {
  const s = formatStatus({ kind: 'completion', info: { model: 'qwen2.5-coder:1.5b', source: 'model', chars: 12 }, ms: 84 });
  assert.equal(s.text, '$(sparkle) qwen2.5-coder:1.5b · 84 ms');
  assert.match(s.tooltip, /qwen2\.5-coder:1\.5b/);
  assert.match(s.tooltip, /12 chars/);
  assert.equal(s.alert, false);
});

test('a cache answer says so', () => {
  const s = formatStatus({ kind: 'completion', info: { model: 'fast', source: 'typed-ahead', chars: 3 }, ms: 2 });
  assert.equal(s.text, '$(sparkle) fast (typed-ahead) · 2 ms');
  assert.match(s.tooltip, /typed-ahead cache/);
});

test('empty answers and actions', () => {
  assert.equal(formatStatus({ kind: 'empty', ms: 101 }).text, '$(sparkle) no suggestion · 101 ms');
  assert.match(
    formatStatus({ kind: 'empty', ms: 5, last: { model: 'fast', source: 'model', chars: 1 } }).tooltip,
    /the one before came from fast/,
  );
  const a = formatStatus({ kind: 'action', task: 'Explain', model: 'cloud', ms: 3400, reason: 'default chain for explain' });
  assert.equal(a.text, '$(sparkle) Explain: cloud · 3.4 s');
  assert.match(a.tooltip, /default chain for explain/);
  const f = formatStatus({ kind: 'failed', task: 'Refactor', message: 'no model answered', ms: 10 });
  assert.equal(f.alert, true);
  assert.match(f.tooltip, /no model answered/);
  assert.equal(formatStatus({ kind: 'stopped' }).alert, true);
  assert.equal(formatStatus({ kind: 'cancelled', task: 'Explain', ms: 900 }).text, '$(sparkle) Explain cancelled · 900 ms');
});

test('long model names are shortened', () => {
  assert.equal(shortModel('short'), 'short');
  const long = 'hf.co/bartowski/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M';
  assert.equal(shortModel(long).length, 28);
  assert.ok(shortModel(long).endsWith('…'));
});

test('acceptInfoOf reads the pilotfish.accept argument of a list or an array', () => {
  const item = {
    insertText: 'x + 1',
    command: { title: 'accept', command: 'pilotfish.accept', arguments: [{ model: 'fast', source: 'cache', chars: 5 }] },
  };
  assert.deepEqual(acceptInfoOf({ items: [item] }), { model: 'fast', source: 'cache', chars: 5 });
  assert.deepEqual(acceptInfoOf([item]), { model: 'fast', source: 'cache', chars: 5 });
  assert.equal(itemCount({ items: [item, item] }), 2);
  assert.equal(itemCount([item]), 1);
});

test('acceptInfoOf ignores empty answers and other commands', () => {
  assert.equal(acceptInfoOf(null), undefined);
  assert.equal(acceptInfoOf(undefined), undefined);
  assert.equal(acceptInfoOf({ items: [] }), undefined);
  assert.equal(acceptInfoOf([{ insertText: 'x' }]), undefined);
  assert.equal(acceptInfoOf([{ command: { command: 'other', arguments: [{ model: 'm' }] } }]), undefined);
  assert.equal(acceptInfoOf([{ command: { command: 'pilotfish.accept', arguments: [] } }]), undefined);
  assert.deepEqual(
    acceptInfoOf([{ command: { command: 'pilotfish.accept', arguments: [{ model: 'm' }] } }]),
    { model: 'm', source: 'model', chars: 0 },
  );
  assert.equal(itemCount(null), 0);
});

test('the tooltip ends with the last day of usage from pilotfish.stats', () => {
  const report = {
    total: { requests: 40, cache_hit_rate: 0.25, shown: 12, accepted: 3, acceptance_rate: 0.25, cost_usd: 0.0123 },
    saving: { saved_usd: 0.0492, ratio: 5, priciest_model: 'cloud' },
  };
  const line = statsSummary(report);
  assert.equal(
    line,
    'Last 24 h: 40 requests, 25% from the cache, 3 of 12 suggestions accepted (25%), $0.0123 spent; routing saved $0.0492 (5.0× cheaper than all on cloud)',
  );
  const free = statsSummary({ total: { requests: 2, cache_hit_rate: null, shown: 0, accepted: 0, acceptance_rate: null, cost_usd: 0 }, saving: { priciest_model: null } });
  assert.equal(free, 'Last 24 h: 2 requests, - from the cache, 0 of 0 suggestions accepted (-), $0.0000 spent');
  assert.equal(statsSummary(null), undefined);
  assert.equal(statsSummary({ error: 'x' }), undefined);
  const s = formatStatusWithStats({ kind: 'ready' }, line);
  assert.match(s.tooltip, /\nLast 24 h: 40 requests/);
  assert.equal(formatStatusWithStats({ kind: 'ready' }, undefined).tooltip, formatStatus({ kind: 'ready' }).tooltip);
});

test('acceptInfoOf keeps the request id for the accept', () => {
  const item = { command: { command: 'pilotfish.accept', arguments: [{ id: 'p1-7', model: 'fast', source: 'model', chars: 3 }] } };
  assert.deepEqual(acceptInfoOf({ items: [item] }), { id: 'p1-7', model: 'fast', source: 'model', chars: 3 });
});
