// Contract test against the real server: the shapes the extension builds and reads
// (initializationOptions from the settings mapping, the action argument, the
// pilotfish.accept argument, the code-action list, the explain result) are the ones
// `pilotfish` speaks. Runs when a built binary is found (PILOTFISH_BIN, or the repository's
// target/{debug,release}/pilotfish, which CI's `cargo test` leaves behind); skipped otherwise.
// The model is a small OpenAI-compatible double on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { AddressInfo } from 'node:net';
import {
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from 'vscode-languageserver-protocol/node';

import { buildActionArgs, pilotfishCommands, summarizeActionResult } from '../commands';
import { serverExecutable, toServerLaunch } from '../settings';
import { acceptInfoOf } from '../status';

function findBinary(): string | undefined {
  const root = path.resolve(__dirname, '..', '..', '..', '..');
  const candidates = [
    process.env.PILOTFISH_BIN,
    path.join(root, 'target', 'debug', 'pilotfish'),
    path.join(root, 'target', 'release', 'pilotfish'),
  ];
  return candidates.find((c): c is string => !!c && fs.existsSync(c));
}

const binary = findBinary();

function modelDouble(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const url = req.url ?? '';
      if (url.endsWith('/models')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ data: [{ id: 'double' }] }));
      } else if (url.endsWith('/chat/completions')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const piece = (content: string) =>
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`;
        res.end(piece('`add` returns the sum ') + piece('of its two arguments.') + 'data: [DONE]\n\n');
      } else if (url.endsWith('/completions')) {
        // As an OpenAI-compatible server answers: streamed when asked to be (a slow or
        // unmeasured model's suggestion at a line's end is).
        const usage = { prompt_tokens: 10, completion_tokens: 3 };
        if (JSON.parse(body || '{}').stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          const piece = (text: string, finish: string | null) =>
            `data: ${JSON.stringify({ choices: [{ index: 0, text, finish_reason: finish }] })}\n\n`;
          res.end(piece('a + ', null) + piece('b', 'stop') + 'data: [DONE]\n\n');
        } else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ choices: [{ index: 0, text: 'a + b', finish_reason: 'stop' }], usage }));
        }
      } else {
        res.writeHead(404);
        res.end();
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('the real server accepts what the extension sends and answers what it reads', { skip: binary ? false : 'no pilotfish binary (set PILOTFISH_BIN)', timeout: 30_000 }, async () => {
  const double = await modelDouble();
  const port = (double.address() as AddressInfo).port;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pilotfish-vscode-'));
  const file = path.join(dir, 'calc.py');
  const text = 'def add(a, b):\n    return \n';
  fs.writeFileSync(file, text);

  const launch = toServerLaunch({
    path: binary,
    completion: { budgetMs: 5000, multiline: 'never' },
    settings: {
      models: { fast: { provider: 'openai', url: `http://127.0.0.1:${port}/v1`, model: 'double', fim: 'qwen' } },
      routes: { complete: ['fast'], explain: ['fast'], refactor: ['fast'], review: ['fast'] },
    },
  });
  assert.deepEqual(launch.warnings, []);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, XDG_CONFIG_HOME: dir, XDG_STATE_HOME: dir, TMPDIR: dir };
  // Spawned the way the language client spawns it (the arguments it would pass included).
  const exe = serverExecutable(launch.command, launch, env);
  const child = spawn(exe.command, exe.args, { env: exe.options.env, cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const conn = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  const messages: string[] = [];
  conn.onNotification('window/showMessage', (p: { message: string }) => void messages.push(p.message));
  conn.onNotification(() => undefined);
  conn.onRequest(() => null);
  conn.listen();
  try {
    const uri = 'file://' + file;
    const init = await conn.sendRequest<{ capabilities: Record<string, unknown> }>('initialize', {
      processId: process.pid,
      rootUri: 'file://' + dir,
      capabilities: { general: { positionEncodings: ['utf-16'] } },
      initializationOptions: launch.initializationOptions,
    });
    assert.ok(init.capabilities.inlineCompletionProvider, 'advertises inline completion');
    await conn.sendNotification('initialized', {});
    await conn.sendNotification('textDocument/didOpen', {
      textDocument: { uri, languageId: 'python', version: 1, text },
    });
    const position = { line: 1, character: 11 };

    const inline = await conn.sendRequest('textDocument/inlineCompletion', {
      textDocument: { uri },
      position,
      context: { triggerKind: 1 },
    });
    const info = acceptInfoOf(inline);
    assert.ok(info, `an item with the pilotfish.accept argument: ${JSON.stringify(inline)}\n${stderr}`);
    assert.equal(typeof info.model, 'string');
    assert.ok(info.chars > 0);

    const offered = pilotfishCommands(await conn.sendRequest('textDocument/codeAction', {
      textDocument: { uri },
      range: { start: position, end: position },
      context: { diagnostics: [] },
    }));
    const ids = offered.map((c) => c.command);
    for (const id of ['pilotfish.explain', 'pilotfish.refactor', 'pilotfish.review']) assert.ok(ids.includes(id), id);

    const result = await conn.sendRequest('workspace/executeCommand', {
      command: 'pilotfish.explain',
      arguments: [buildActionArgs(uri, { start: position, end: position })],
    });
    const summary = summarizeActionResult('Explain', result);
    assert.ok(summary.model, `the explain result names its model: ${JSON.stringify(result)}`);
    assert.match(String((result as { markdown?: unknown }).markdown), /sum/);

    await conn.sendRequest('shutdown');
    await conn.sendNotification('exit');
  } finally {
    conn.dispose();
    child.kill();
    double.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
