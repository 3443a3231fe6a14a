// The VS Code side: starts `pilotfish` over stdio with vscode-languageclient, which also
// provides the inline completions (LSP 3.18 `textDocument/inlineCompletion`) and registers
// the server's commands (`pilotfish.accept`, `pilotfish.explain`, …) itself. This file adds
// the editor commands + keybindings, the status bar, and the settings mapping.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as readline from 'node:readline';
import { Readable } from 'node:stream';
import * as vscode from 'vscode';
import {
  CodeActionRequest,
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';

import {
  EDITOR_ACTIONS,
  EditorAction,
  buildActionArgs,
  errorDisposition,
  pilotfishCommands,
  summarizeActionResult,
  taskOf,
} from './commands';
import {
  ExtensionSettings,
  ServerLaunch,
  needsRestart,
  resolveCommand,
  serverExecutable,
  toServerLaunch,
} from './settings';
import { ChannelLevel, serverLogLine } from './serverlog';
import { AcceptInfo, StatusState, acceptInfoOf, formatStatusWithStats, statsSummary } from './status';

let client: LanguageClient | undefined;
let launch: ServerLaunch | undefined;
let statusItem: vscode.StatusBarItem;
let output: vscode.LogOutputChannel;
let lastAccept: AcceptInfo | undefined;
let lastStatus: StatusState = { kind: 'starting' };
/** The last day's usage (from `pilotfish.stats`), the tooltip's last line. */
let usageLine: string | undefined;
let usageAsked = 0;
/** The usage summary is asked for at most this often, after completions and actions. */
const USAGE_EVERY_MS = 30_000;

function readSettings(): ExtensionSettings {
  const c = vscode.workspace.getConfiguration('pilotfish');
  return {
    path: c.get('path'),
    configPath: c.get('configPath'),
    completion: {
      budgetMs: c.get('completion.budgetMs'),
      debounceMs: c.get('completion.debounceMs'),
      multiline: c.get('completion.multiline'),
    },
    settings: c.get('settings'),
    log: c.get('log'),
  };
}

function currentLaunch(): ServerLaunch {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  return toServerLaunch(readSettings(), { home: os.homedir(), workspaceFolder: folder });
}

function setStatus(state: StatusState): void {
  lastStatus = state;
  const s = formatStatusWithStats(state, usageLine);
  statusItem.text = s.text;
  statusItem.tooltip = s.tooltip;
  statusItem.backgroundColor = s.alert ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
  statusItem.show();
}

/** Refreshes the tooltip's usage line from the server's `pilotfish.stats` (rate-limited). */
function refreshUsage(force = false): void {
  const c = client;
  const now = Date.now();
  if (!c || c.state !== State.Running || (!force && now - usageAsked < USAGE_EVERY_MS)) return;
  usageAsked = now;
  c.sendRequest(ExecuteCommandRequest.type, { command: 'pilotfish.stats', arguments: [{ since: '1d' }] }).then(
    (result) => {
      usageLine = statsSummary(result);
      setStatus(lastStatus);
    },
    (error) => output.appendLine(`[stats] ${error instanceof Error ? error.message : String(error)}`),
  );
}

function warn(lines: string[]): void {
  for (const line of lines) {
    output.appendLine(`[settings] ${line}`);
    void vscode.window.showWarningMessage(`Pilotfish: ${line}`);
  }
}

function forEachLine(input: Readable, fn: (line: string) => void): void {
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 }).on('line', fn);
}

/**
 * Settings of VS Code's own that hide every extension's ghost text: with either, the editor
 * sends no `textDocument/inlineCompletion` at all (seen in Code 1.139), and Pilotfish would
 * look broken. Said once per setting and session; the actions work regardless.
 */
const INLINE_SUGGESTIONS_OFF = [
  { section: 'chat', key: 'disableAIFeatures', off: true },
  { section: 'editor', key: 'inlineSuggest.enabled', off: false },
] as const;
const saidInlineOff = new Set<string>();

function warnIfInlineSuggestionsOff(): void {
  for (const { section, key, off } of INLINE_SUGGESTIONS_OFF) {
    const name = `${section}.${key}`;
    if (vscode.workspace.getConfiguration(section).get<boolean>(key) !== off || saidInlineOff.has(name)) continue;
    saidInlineOff.add(name);
    const line = `"${name}": ${off} hides the inline suggestions of every extension, Pilotfish's too; Explain, Refactor and Security review still work.`;
    output.warn(`[settings] ${line}`);
    void vscode.window.showWarningMessage(`Pilotfish: ${line}`);
  }
}

function clientOptions(l: ServerLaunch): LanguageClientOptions {
  return {
    // Pilotfish runs beside every language's own server, on any file.
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: l.initializationOptions,
    outputChannel: output,
    // The server's log (stderr) at its own levels; the client's default logs it all as errors.
    stdioOptions: {
      stdout: (input, channel) => forEachLine(input, (line) => channel.info(line)),
      stderr: (input, channel) => {
        let level: ChannelLevel | undefined;
        forEachLine(input, (line) => {
          const l = serverLogLine(line, level);
          level = l.level;
          channel[l.level](l.text);
        });
      },
    },
    middleware: {
      // The client's own inline-completion provider calls this; it is only measured here.
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const t0 = performance.now();
        const result = await next(document, position, context, token);
        if (!token.isCancellationRequested) {
          const ms = performance.now() - t0;
          const info = acceptInfoOf(result);
          if (info) {
            lastAccept = info;
            setStatus({ kind: 'completion', info, ms });
          } else {
            setStatus({ kind: 'empty', ms, last: lastAccept });
          }
          refreshUsage();
        }
        return result;
      },
      // Every run of a server command (code-action light bulb, keybinding, palette) passes
      // here: time it and put the answering model in the status bar.
      executeCommand: async (command, args, next) => {
        if (command === 'pilotfish.accept' || command === 'pilotfish.stats') return next(command, args);
        const task = taskOf(command, args[0]);
        const t0 = performance.now();
        setStatus({ kind: 'running', task });
        try {
          // Sent directly rather than through `next`: the client's own error path pops up a
          // second, generic notification for errors the server has already shown.
          const c = client;
          const result = c
            ? await c.sendRequest(ExecuteCommandRequest.type, { command, arguments: args })
            : await next(command, args);
          const ms = performance.now() - t0;
          const summary = summarizeActionResult(task, result);
          if (summary.model) setStatus({ kind: 'action', task, model: summary.model, ms, reason: summary.reason });
          else setStatus({ kind: 'cancelled', task, ms });
          if (summary.message) void vscode.window.showInformationMessage(`Pilotfish: ${summary.message}`);
          refreshUsage(true);
          return result;
        } catch (error) {
          const ms = performance.now() - t0;
          const d = errorDisposition(error);
          output.appendLine(`[${task}] ${d.message}`);
          if (d.status === 'cancelled') setStatus({ kind: 'cancelled', task, ms });
          else setStatus({ kind: 'failed', task, message: d.message, ms });
          if (d.show) void vscode.window.showErrorMessage(`Pilotfish: ${task} failed: ${d.message}`);
          return undefined;
        }
      },
    },
  };
}

async function startClient(): Promise<void> {
  const l = currentLaunch();
  launch = l;
  warn(l.warnings);
  const extraDirs = [path.join(os.homedir(), '.cargo', 'bin')];
  const command = resolveCommand(l.command, process.env.PATH, extraDirs, (f) => {
    try {
      return fs.statSync(f).isFile();
    } catch {
      return false;
    }
  });
  if (!command) {
    const message = `cannot find the server "${l.command}" (on PATH or in ~/.cargo/bin). Install it with \`cargo install --path .\` or set pilotfish.path.`;
    setStatus({ kind: 'stopped', message });
    const open = 'Open settings';
    void vscode.window.showErrorMessage(`Pilotfish: ${message}`, open).then((choice) => {
      if (choice === open) void vscode.commands.executeCommand('workbench.action.openSettings', 'pilotfish.path');
    });
    return;
  }
  const serverOptions: ServerOptions = serverExecutable(command, l, process.env);
  output.appendLine(`starting ${command} ${l.args.join(' ')}`.trimEnd());
  output.appendLine(`initializationOptions: ${JSON.stringify(l.initializationOptions)}`);
  const c = new LanguageClient('pilotfish', 'Pilotfish', serverOptions, clientOptions(l));
  c.onDidChangeState((e) => {
    if (e.newState === State.Running) {
      setStatus({ kind: 'ready' });
      refreshUsage(true);
    }
    else if (e.newState === State.Stopped) setStatus({ kind: 'stopped' });
    else setStatus({ kind: 'starting' });
  });
  client = c;
  setStatus({ kind: 'starting' });
  try {
    await c.start();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    setStatus({ kind: 'stopped', message });
    void vscode.window.showErrorMessage(`Pilotfish: the server did not start: ${message}`);
  }
}

async function stopClient(): Promise<void> {
  const c = client;
  client = undefined;
  if (c) {
    try {
      await c.stop();
    } catch (error) {
      output.appendLine(`stop: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

async function restartClient(): Promise<void> {
  await stopClient();
  await startClient();
}

function runningClient(): LanguageClient | undefined {
  if (client && client.state === State.Running) return client;
  void vscode.window.showWarningMessage('Pilotfish: the language server is not running (see the Pilotfish output).');
  return undefined;
}

function editorTarget(): { uri: string; range: vscode.Range } | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage('Pilotfish: open a file and put the cursor in the code to work on.');
    return undefined;
  }
  return { uri: editor.document.uri.toString(), range: editor.selection };
}

/** Explain / Refactor / Security review on the selection (or the enclosing function). */
async function runEditorAction(id: EditorAction): Promise<unknown> {
  if (!runningClient()) return undefined;
  const target = editorTarget();
  if (!target) return undefined;
  const r = target.range;
  const args = buildActionArgs(target.uri, {
    start: { line: r.start.line, character: r.start.character },
    end: { line: r.end.line, character: r.end.character },
  });
  // The language client registered the server's command ids; going through them keeps
  // one path (and the status-bar middleware) for keybindings and the light bulb alike.
  return vscode.commands.executeCommand(EDITOR_ACTIONS[id].server, args);
}

/** Picks any of the server's actions at the cursor — including the user's `[actions.*]`. */
async function pickAction(): Promise<unknown> {
  const c = runningClient();
  if (!c) return undefined;
  const target = editorTarget();
  if (!target) return undefined;
  const offered = await c.sendRequest(CodeActionRequest.type, {
    textDocument: { uri: target.uri },
    range: c.code2ProtocolConverter.asRange(target.range),
    context: { diagnostics: [] },
  });
  const commands = pilotfishCommands(offered);
  if (commands.length === 0) {
    void vscode.window.showInformationMessage('Pilotfish: no action here.');
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    commands.map((cmd) => ({ label: cmd.title, cmd })),
    { placeHolder: 'Pilotfish action' },
  );
  if (!picked) return undefined;
  return vscode.commands.executeCommand(picked.cmd.command, ...(picked.cmd.arguments ?? []));
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('Pilotfish', { log: true });
  statusItem = vscode.window.createStatusBarItem('pilotfish.status', vscode.StatusBarAlignment.Right, 100);
  statusItem.name = 'Pilotfish';
  statusItem.command = 'pilotfish.showOutput';
  context.subscriptions.push(output, statusItem);

  for (const id of Object.keys(EDITOR_ACTIONS) as EditorAction[]) {
    context.subscriptions.push(vscode.commands.registerCommand(id, () => runEditorAction(id)));
  }
  context.subscriptions.push(
    vscode.commands.registerCommand('pilotfish.runAction', pickAction),
    vscode.commands.registerCommand('pilotfish.restart', restartClient),
    vscode.commands.registerCommand('pilotfish.showOutput', () => output.show(true)),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (INLINE_SUGGESTIONS_OFF.some(({ section, key }) => e.affectsConfiguration(`${section}.${key}`))) {
        warnIfInlineSuggestionsOff();
      }
      if (!e.affectsConfiguration('pilotfish')) return;
      const next = currentLaunch();
      if (!launch || !client || needsRestart(launch, next)) {
        await restartClient();
        return;
      }
      launch = next;
      warn(next.warnings);
      // Same shape as initializationOptions; the server merges it over its config file.
      await client.sendNotification(DidChangeConfigurationNotification.type, {
        settings: next.initializationOptions,
      });
    }),
  );

  warnIfInlineSuggestionsOff();
  await startClient();
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
