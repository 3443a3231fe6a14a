import { test } from 'node:test';
import assert from 'node:assert/strict';

import { deepMerge, expandPath, needsRestart, resolveCommand, serverExecutable, toServerLaunch } from '../settings';

test('defaults: bare "pilotfish", no args, no overrides (the config file decides)', () => {
  const l = toServerLaunch({
    path: 'pilotfish',
    configPath: '',
    completion: { budgetMs: null, debounceMs: null, multiline: 'default' },
    settings: {},
    log: '',
  });
  assert.equal(l.command, 'pilotfish');
  assert.deepEqual(l.args, []);
  assert.deepEqual(l.env, {});
  assert.deepEqual(l.initializationOptions, {});
  assert.deepEqual(l.warnings, []);
});

test('nothing at all is the same as the defaults', () => {
  const l = toServerLaunch({});
  assert.equal(l.command, 'pilotfish');
  assert.deepEqual(l.initializationOptions, {});
  assert.deepEqual(l.warnings, []);
});

test('completion settings map to the TOML keys', () => {
  const l = toServerLaunch({ completion: { budgetMs: 150, debounceMs: 30, multiline: 'never' } });
  assert.deepEqual(l.initializationOptions, {
    completion: { budget_ms: 150, debounce_ms: 30, multiline: 'never' },
  });
});

test('milliseconds are whole numbers; 0 debounce is allowed, 0 budget is not', () => {
  const l = toServerLaunch({ completion: { budgetMs: 99.6, debounceMs: 0 } });
  assert.deepEqual(l.initializationOptions, { completion: { budget_ms: 100, debounce_ms: 0 } });
  const bad = toServerLaunch({ completion: { budgetMs: 0, debounceMs: -5 } });
  assert.deepEqual(bad.initializationOptions, {});
  assert.equal(bad.warnings.length, 2);
  assert.match(bad.warnings[0], /pilotfish\.completion\.budgetMs/);
  assert.match(bad.warnings[1], /pilotfish\.completion\.debounceMs/);
});

test('bad values are warnings, not sent', () => {
  const l = toServerLaunch({
    path: 42,
    completion: { budgetMs: 'fast', multiline: 'sometimes' },
    settings: ['not', 'an', 'object'],
  });
  assert.equal(l.command, 'pilotfish');
  assert.deepEqual(l.initializationOptions, {});
  assert.equal(l.warnings.length, 4);
});

test('pilotfish.settings is the base; the specific settings win over it', () => {
  const settings = {
    completion: { budget_ms: 80, cache_entries: 1024 },
    models: { fast: { provider: 'llamacpp', url: 'http://127.0.0.1:8012', model: 'qwen' } },
    routes: { complete: ['fast'] },
  };
  const l = toServerLaunch({ settings, completion: { budgetMs: 200 } });
  assert.deepEqual(l.initializationOptions, {
    completion: { budget_ms: 200, cache_entries: 1024 },
    models: { fast: { provider: 'llamacpp', url: 'http://127.0.0.1:8012', model: 'qwen' } },
    routes: { complete: ['fast'] },
  });
  // The user's object is not modified.
  assert.equal(settings.completion.budget_ms, 80);
});

test('configPath becomes --config, with ~ and ${workspaceFolder} expanded', () => {
  const ctx = { home: '/home/me', workspaceFolder: '/src/app' };
  assert.deepEqual(toServerLaunch({ configPath: '~/pf.toml' }, ctx).args, ['--config', '/home/me/pf.toml']);
  assert.deepEqual(
    toServerLaunch({ configPath: '${workspaceFolder}/.pilotfish.toml' }, ctx).args,
    ['--config', '/src/app/.pilotfish.toml'],
  );
  assert.equal(toServerLaunch({ path: '~/.cargo/bin/pilotfish' }, ctx).command, '/home/me/.cargo/bin/pilotfish');
});

test('expandPath leaves unknown variables and plain paths alone', () => {
  assert.equal(expandPath(' /opt/pf ', {}), '/opt/pf');
  assert.equal(expandPath('${workspaceFolder}/x', {}), '${workspaceFolder}/x');
  assert.equal(expandPath('a~/b', { home: '/h' }), 'a~/b');
});

test('log level goes to PILOTFISH_LOG', () => {
  assert.deepEqual(toServerLaunch({ log: 'debug' }).env, { PILOTFISH_LOG: 'debug' });
});

test('deepMerge replaces arrays and scalars, merges objects', () => {
  assert.deepEqual(
    deepMerge({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] }, d: { e: 2 } }),
    { a: { b: 1, c: [3] }, d: { e: 2 } },
  );
});

test('restart only when the process itself changes', () => {
  const a = toServerLaunch({ completion: { budgetMs: 100 } });
  assert.equal(needsRestart(a, toServerLaunch({ completion: { budgetMs: 300 } })), false);
  assert.equal(needsRestart(a, toServerLaunch({ configPath: '/x.toml' })), true);
  assert.equal(needsRestart(a, toServerLaunch({ path: '/opt/pilotfish' })), true);
  assert.equal(needsRestart(a, toServerLaunch({ log: 'debug' })), true);
});

test('resolveCommand: PATH first, then the extra dirs; explicit paths must exist', () => {
  const files = new Set(['/usr/local/bin/pilotfish', '/home/me/.cargo/bin/pilotfish']);
  const exists = (f: string) => files.has(f);
  assert.equal(resolveCommand('pilotfish', '/usr/bin:/usr/local/bin', [], exists, 'linux'), '/usr/local/bin/pilotfish');
  assert.equal(resolveCommand('pilotfish', '/usr/bin', ['/home/me/.cargo/bin'], exists, 'linux'), '/home/me/.cargo/bin/pilotfish');
  assert.equal(resolveCommand('pilotfish', '/usr/bin', [], exists, 'linux'), undefined);
  assert.equal(resolveCommand('/usr/local/bin/pilotfish', '', [], exists, 'linux'), '/usr/local/bin/pilotfish');
  assert.equal(resolveCommand('/nope/pilotfish', '/usr/local/bin', [], exists, 'linux'), undefined);
  const win = new Set(['C:\\bin\\pilotfish.exe']);
  assert.equal(resolveCommand('pilotfish', 'C:\\bin;D:\\x', [], (f) => win.has(f), 'win32'), 'C:\\bin\\pilotfish.exe');
});

test('serverExecutable: no transport, so the language client adds no --stdio (pilotfish rejects it)', () => {
  const l = toServerLaunch({ path: '/opt/pilotfish', configPath: '/etc/p.toml', log: 'debug' });
  const exe = serverExecutable('/opt/pilotfish', l, { PATH: '/bin', PILOTFISH_LOG: 'off' });
  assert.equal('transport' in exe, false);
  assert.deepEqual(exe.args, ['--config', '/etc/p.toml']);
  assert.ok(!exe.args.includes('--stdio'));
  assert.deepEqual(exe.options.env, { PATH: '/bin', PILOTFISH_LOG: 'debug' });
});
