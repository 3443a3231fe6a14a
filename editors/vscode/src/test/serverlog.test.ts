import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ChannelLevel, serverLogLine } from '../serverlog';

test('tracing lines: the level picks the channel method, the time stamp goes', () => {
  const cases: Array<[string, ChannelLevel, string]> = [
    ['2026-11-22T10:08:36.616245Z  INFO pilotfish::lsp: configuration loaded origin=/w/.pilotfish.toml', 'info', 'INFO pilotfish::lsp: configuration loaded origin=/w/.pilotfish.toml'],
    ['2026-11-22T10:08:36.616245Z  WARN pilotfish::completion: completion failed: timeout', 'warn', 'WARN pilotfish::completion: completion failed: timeout'],
    ['2026-11-22T10:08:36.616245Z ERROR pilotfish::lsp: inlineCompletion panicked: boom', 'error', 'ERROR pilotfish::lsp: inlineCompletion panicked: boom'],
    ['2026-11-22T10:08:36.616245Z DEBUG pilotfish::lsp: opened uri="file:///a.py"', 'info', 'DEBUG pilotfish::lsp: opened uri="file:///a.py"'],
    ['2026-11-22T10:08:36Z TRACE hyper: x', 'info', 'TRACE hyper: x'],
  ];
  for (const [line, level, text] of cases) {
    assert.deepEqual(serverLogLine(line, 'error'), { level, text }, line);
  }
});

test('continuation lines keep the level of the line before', () => {
  assert.deepEqual(serverLogLine('  1. qwen  kept     local, healthy', 'info'), { level: 'info', text: '  1. qwen  kept     local, healthy' });
  assert.equal(serverLogLine('try: qwen', 'warn').level, 'warn');
});

test('panics, usage errors and lines before any tracing line are errors', () => {
  assert.equal(serverLogLine("thread 'tokio-runtime-worker' panicked at src/lsp.rs:1:1:", 'info').level, 'error');
  assert.equal(serverLogLine("error: unexpected argument '--stdio' found", 'info').level, 'error');
  assert.equal(serverLogLine('pilotfish: config: unknown key `modles`', 'info').level, 'error');
  assert.equal(serverLogLine('Usage: pilotfish [OPTIONS] [COMMAND]').level, 'error');
  assert.equal(serverLogLine('not a time stamp  INFO x', undefined).level, 'error');
});
