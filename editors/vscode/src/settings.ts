// Pure: VS Code settings -> how to start the server. No `vscode` import, so that
// `node --test` can exercise it without an editor.

/** The extension's settings as read from `workspace.getConfiguration('pilotfish')`. */
export interface ExtensionSettings {
  /** The server binary; a bare name is looked up on PATH. */
  path?: unknown;
  /** A pilotfish TOML file, passed as `--config`. Empty: the server's own lookup. */
  configPath?: unknown;
  /** `pilotfish.completion.*`; null/absent = leave it to the config file. */
  completion?: {
    budgetMs?: unknown;
    debounceMs?: unknown;
    multiline?: unknown;
  };
  /** Free-form overrides, same shape as the TOML config (as JSON). */
  settings?: unknown;
  /** Value of PILOTFISH_LOG for the server process. Empty: not set. */
  log?: unknown;
}

/** What paths may refer to. */
export interface PathContext {
  home?: string;
  workspaceFolder?: string;
}

export interface ServerLaunch {
  command: string;
  args: string[];
  /** Extra environment for the server process (merged over the editor's). */
  env: Record<string, string>;
  /** Sent as `initializationOptions` and in `workspace/didChangeConfiguration`. */
  initializationOptions: Record<string, unknown>;
  /** Settings that were ignored, one readable line each. */
  warnings: string[];
}

export const DEFAULT_COMMAND = 'pilotfish';
export const MULTILINE_VALUES = ['auto', 'always', 'never'] as const;

type Json = Record<string, unknown>;

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge of plain objects; `over` wins, arrays and scalars are replaced. */
export function deepMerge(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

/** Expands `~` and `${workspaceFolder}`/`${userHome}` in a path setting. */
export function expandPath(p: string, ctx: PathContext): string {
  let out = p.trim();
  if (ctx.home !== undefined) {
    out = out.replace(/\$\{userHome\}/g, ctx.home);
    if (out === '~') out = ctx.home;
    else if (out.startsWith('~/')) out = ctx.home + out.slice(1);
  }
  if (ctx.workspaceFolder !== undefined) {
    out = out.replace(/\$\{workspaceFolder\}/g, ctx.workspaceFolder);
  }
  return out;
}

/** A whole number of milliseconds >= min, or a warning. null/undefined/"" mean "not set". */
function millis(
  value: unknown,
  name: string,
  min: number,
  warnings: string[],
): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    warnings.push(`pilotfish.${name}: expected a number of milliseconds >= ${min}, got ${JSON.stringify(value)}; ignored`);
    return undefined;
  }
  return Math.round(value);
}

/**
 * Maps the extension's settings to the server's command line and `initializationOptions`
 * (the same shape as the TOML config). Settings left at their default are not sent, so
 * the user's config file keeps the say; `pilotfish.settings` is the base and the
 * specific settings win over it.
 */
export function toServerLaunch(s: ExtensionSettings, ctx: PathContext = {}): ServerLaunch {
  const warnings: string[] = [];

  let command = DEFAULT_COMMAND;
  if (typeof s.path === 'string' && s.path.trim() !== '') {
    command = expandPath(s.path, ctx);
  } else if (s.path !== undefined && s.path !== null && s.path !== '') {
    warnings.push(`pilotfish.path: expected a string, got ${JSON.stringify(s.path)}; using "${DEFAULT_COMMAND}"`);
  }

  const args: string[] = [];
  if (typeof s.configPath === 'string' && s.configPath.trim() !== '') {
    args.push('--config', expandPath(s.configPath, ctx));
  }

  let options: Json = {};
  if (isPlainObject(s.settings)) {
    options = deepMerge({}, s.settings);
  } else if (s.settings !== undefined && s.settings !== null) {
    warnings.push(`pilotfish.settings: expected an object (the TOML config as JSON), got ${JSON.stringify(s.settings)}; ignored`);
  }

  const completion: Json = {};
  const c = s.completion ?? {};
  const budget = millis(c.budgetMs, 'completion.budgetMs', 1, warnings);
  if (budget !== undefined) completion.budget_ms = budget;
  const debounce = millis(c.debounceMs, 'completion.debounceMs', 0, warnings);
  if (debounce !== undefined) completion.debounce_ms = debounce;
  const multiline = c.multiline;
  if (typeof multiline === 'string' && (MULTILINE_VALUES as readonly string[]).includes(multiline)) {
    completion.multiline = multiline;
  } else if (multiline !== undefined && multiline !== null && multiline !== '' && multiline !== 'default') {
    warnings.push(`pilotfish.completion.multiline: expected one of ${MULTILINE_VALUES.join(', ')}, got ${JSON.stringify(multiline)}; ignored`);
  }
  if (Object.keys(completion).length > 0) {
    options = deepMerge(options, { completion });
  }

  const env: Record<string, string> = {};
  if (typeof s.log === 'string' && s.log.trim() !== '') env.PILOTFISH_LOG = s.log.trim();

  return { command, args, env, initializationOptions: options, warnings };
}

/** The language client's `Executable` (structurally): the process to spawn. */
export interface ServerExecutable {
  command: string;
  args: string[];
  options: { env: Record<string, string | undefined> };
}

/**
 * How the language client spawns the server. Deliberately without a `transport`: with
 * `TransportKind.stdio` vscode-languageclient appends `--stdio` to the arguments, which
 * pilotfish (always stdio, strict argument parsing) rejects with exit code 2, so the server
 * never started in VS Code. Left undefined, the client still talks over stdin/stdout.
 */
export function serverExecutable(
  command: string,
  launch: ServerLaunch,
  baseEnv: Record<string, string | undefined>,
): ServerExecutable {
  return { command, args: [...launch.args], options: { env: { ...baseEnv, ...launch.env } } };
}

/** Whether a settings change needs the server restarted (vs. a didChangeConfiguration). */
export function needsRestart(before: ServerLaunch, after: ServerLaunch): boolean {
  return (
    before.command !== after.command ||
    JSON.stringify(before.args) !== JSON.stringify(after.args) ||
    JSON.stringify(before.env) !== JSON.stringify(after.env)
  );
}

/**
 * Finds a bare command name on PATH (then in `extraDirs`, e.g. ~/.cargo/bin, which a
 * desktop-launched VS Code often lacks). Paths with a separator are returned as they are.
 * `undefined` when nothing was found, so the caller can say so instead of a spawn error.
 */
export function resolveCommand(
  command: string,
  pathEnv: string | undefined,
  extraDirs: string[],
  exists: (file: string) => boolean,
  platform: string = process.platform,
): string | undefined {
  const sep = platform === 'win32' ? ';' : ':';
  if (command.includes('/') || (platform === 'win32' && command.includes('\\'))) {
    return exists(command) ? command : undefined;
  }
  const names = platform === 'win32' && !/\.[a-z]+$/i.test(command) ? [command + '.exe', command] : [command];
  const dirs = [...(pathEnv ?? '').split(sep).filter((d) => d !== ''), ...extraDirs];
  const slash = platform === 'win32' ? '\\' : '/';
  for (const dir of dirs) {
    for (const name of names) {
      const file = dir.endsWith(slash) || dir.endsWith('/') ? dir + name : dir + slash + name;
      if (exists(file)) return file;
    }
  }
  return undefined;
}
