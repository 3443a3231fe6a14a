import { afterEach, beforeEach, mock, test } from 'node:test';
import assert from 'node:assert/strict';

import { CANCEL_GRACE_MS, CancelHandover } from '../handover';

beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
afterEach(() => mock.timers.reset());

/** Counts the cancels that reached the "server". */
function forwarded(): { count: number; forward: () => void } {
  const f = { count: 0, forward: () => { f.count++; } };
  return f;
}

test('a cancel followed by a newer request for the document never reaches the server', () => {
  // VS Code on a keystroke: cancel the pending request, 50 ms later ask again.
  const h = new CancelHandover();
  const sent = forwarded();
  const first = h.begin('file:///a.py');
  first.cancelled(sent.forward);
  mock.timers.tick(50);
  h.begin('file:///a.py');
  mock.timers.tick(CANCEL_GRACE_MS * 2);
  assert.equal(sent.count, 0);
});

test('a cancel with no newer request reaches the server after the grace period', () => {
  // The user pressed Escape or clicked away: the model call must stop.
  const h = new CancelHandover();
  const sent = forwarded();
  h.begin('file:///a.py').cancelled(sent.forward);
  mock.timers.tick(CANCEL_GRACE_MS - 1);
  assert.equal(sent.count, 0);
  mock.timers.tick(1);
  assert.equal(sent.count, 1);
});

test('a newer request for another document does not hold the cancel back', () => {
  const h = new CancelHandover();
  const sent = forwarded();
  h.begin('file:///a.py').cancelled(sent.forward);
  h.begin('file:///b.py');
  mock.timers.tick(CANCEL_GRACE_MS);
  assert.equal(sent.count, 1);
});

test('nothing is forwarded for a request the server already answered', () => {
  const h = new CancelHandover();
  const sent = forwarded();
  const r = h.begin('file:///a.py');
  r.cancelled(sent.forward);
  r.settled();
  mock.timers.tick(CANCEL_GRACE_MS);
  r.cancelled(sent.forward);
  mock.timers.tick(CANCEL_GRACE_MS);
  assert.equal(sent.count, 0);
});

test('the newest request, cancelled in turn with nothing after it, is forwarded once', () => {
  const h = new CancelHandover();
  const sent = forwarded();
  const first = h.begin('file:///a.py');
  first.cancelled(sent.forward);
  mock.timers.tick(50);
  const second = h.begin('file:///a.py');
  first.settled(); // the server answered the superseded one, empty
  second.cancelled(sent.forward);
  second.cancelled(sent.forward); // VS Code may signal twice
  mock.timers.tick(CANCEL_GRACE_MS);
  assert.equal(sent.count, 1);
});
