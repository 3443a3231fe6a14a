// Pure: the arguments of the server's action commands, and reading their results.

/** An LSP position/range (0-based line, UTF-16 character), as plain JSON. */
export interface LspPosition { line: number; character: number }
export interface LspRange { start: LspPosition; end: LspPosition }

/** The argument the server's `pilotfish.explain|refactor|review|action` commands take. */
export interface ActionArgs {
  uri: string;
  range: LspRange;
  action?: string;
}

/** The editor commands this extension contributes, and the server command each runs. */
export const EDITOR_ACTIONS = {
  'pilotfish.explainSelection': { server: 'pilotfish.explain', task: 'Explain' },
  'pilotfish.refactorSelection': { server: 'pilotfish.refactor', task: 'Refactor' },
  'pilotfish.reviewSelection': { server: 'pilotfish.review', task: 'Security review' },
} as const;
export type EditorAction = keyof typeof EDITOR_ACTIONS;

/** The commands the server implements (the language client registers these ids itself). */
export const SERVER_ACTION_COMMANDS = ['pilotfish.explain', 'pilotfish.refactor', 'pilotfish.review', 'pilotfish.action'] as const;

export function taskOf(serverCommand: string, args?: unknown): string {
  switch (serverCommand) {
    case 'pilotfish.explain': return 'Explain';
    case 'pilotfish.refactor': return 'Refactor';
    case 'pilotfish.review': return 'Security review';
    case 'pilotfish.action': {
      const name = (args as { action?: unknown } | undefined)?.action;
      return typeof name === 'string' ? name : 'Action';
    }
    default: return serverCommand;
  }
}

function pos(p: LspPosition): LspPosition {
  return { line: Math.max(0, Math.trunc(p.line)), character: Math.max(0, Math.trunc(p.character)) };
}

/**
 * The command argument for a selection. An empty selection (a cursor) is sent as an empty
 * range, which makes the server target the enclosing function/class. A reversed selection
 * (made bottom-up) is put in document order.
 */
export function buildActionArgs(uri: string, selection: LspRange, action?: string): ActionArgs {
  let start = pos(selection.start);
  let end = pos(selection.end);
  if (end.line < start.line || (end.line === start.line && end.character < start.character)) {
    [start, end] = [end, start];
  }
  const args: ActionArgs = { uri, range: { start, end } };
  if (action !== undefined && action !== '') args.action = action;
  return args;
}

/** What the status bar and a notification say about a finished action. */
export interface ActionSummary {
  model?: string;
  reason?: string;
  /** One line for the user, or undefined when the server already showed the answer. */
  message?: string;
}

export function summarizeActionResult(task: string, result: unknown): ActionSummary {
  if (typeof result !== 'object' || result === null) return {};
  const r = result as Record<string, unknown>;
  const model = typeof r.model === 'string' && r.model !== '' ? r.model : undefined;
  const reason = typeof r.reason === 'string' ? r.reason : undefined;
  let message: string | undefined;
  if (Array.isArray(r.findings)) {
    const n = r.findings.length;
    message = n === 0
      ? `${task}: no findings`
      : `${task}: ${n} finding${n === 1 ? '' : 's'} (see the Problems panel)`;
  } else if (typeof r.applied === 'boolean') {
    message = r.applied ? undefined : `${task}: the editor did not apply the edit`;
  }
  return { model, reason, message };
}

/** Structural view of a server code action (a CodeAction with a command, or a Command). */
export interface OfferedCommand {
  title: string;
  command: string;
  arguments?: unknown[];
}

/** The pilotfish commands among a `textDocument/codeAction` answer. */
export function pilotfishCommands(actions: unknown): OfferedCommand[] {
  if (!Array.isArray(actions)) return [];
  const out: OfferedCommand[] = [];
  for (const a of actions as Array<Record<string, unknown>>) {
    if (typeof a !== 'object' || a === null) continue;
    const cmd = (typeof a.command === 'string' ? a : a.command) as Record<string, unknown> | undefined;
    if (!cmd || typeof cmd.command !== 'string' || !cmd.command.startsWith('pilotfish.')) continue;
    if (cmd.command === 'pilotfish.accept') continue;
    const title = typeof a.title === 'string' ? a.title : typeof cmd.title === 'string' ? cmd.title : cmd.command;
    out.push({ title, command: cmd.command, arguments: Array.isArray(cmd.arguments) ? cmd.arguments : undefined });
  }
  return out;
}

/** JSON-RPC error codes the extension treats specially. */
export const REQUEST_CANCELLED = -32800;
export const REQUEST_FAILED = -32803;

/**
 * How to report a failed action. The server already shows its own "RequestFailed" errors
 * (with the model's one-line reason) in a message; repeating them would double the popup.
 */
export function errorDisposition(error: unknown): { status: 'cancelled' | 'failed'; show: boolean; message: string } {
  const e = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; message?: unknown; name?: unknown };
  const message = typeof e.message === 'string' ? e.message : String(error);
  // A ResponseError with the LSP code, or VS Code's CancellationError (name "Canceled").
  if (e.code === REQUEST_CANCELLED || e.code === -32802 || e.name === 'Canceled') return { status: 'cancelled', show: false, message: 'cancelled' };
  return { status: 'failed', show: e.code !== REQUEST_FAILED, message };
}
