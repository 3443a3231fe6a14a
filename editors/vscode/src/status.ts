// Pure: what the status bar item says. No `vscode` import.

/** The argument of the `pilotfish.accept` command each suggestion carries. */
export interface AcceptInfo {
  /** The request's id in the usage log. */
  id?: string;
  model: string;
  /** "model", "cache" or "typed-ahead". */
  source: string;
  chars: number;
}

export type StatusState =
  | { kind: 'starting' }
  | { kind: 'ready' }
  | { kind: 'stopped'; message?: string }
  | { kind: 'completion'; info: AcceptInfo; ms: number }
  | { kind: 'empty'; ms: number; last?: AcceptInfo }
  | { kind: 'action'; task: string; model: string; ms: number; reason?: string }
  | { kind: 'running'; task: string }
  | { kind: 'failed'; task: string; message: string; ms: number }
  | { kind: 'cancelled'; task: string; ms: number };

/** The parts of the `pilotfish.stats` report (`pilotfish stats --json`) the tooltip shows. */
interface StatsRow {
  requests?: number;
  cache_hit_rate?: number | null;
  shown?: number;
  accepted?: number;
  acceptance_rate?: number | null;
  cost_usd?: number;
}
interface StatsReport {
  total?: StatsRow;
  saving?: { saved_usd?: number; ratio?: number | null; priciest_model?: string | null };
}

const percent = (r: number | null | undefined): string =>
  typeof r === 'number' && Number.isFinite(r) ? `${Math.round(r * 100)}%` : '-';
const usd = (v: number | undefined): string => `$${(typeof v === 'number' ? v : 0).toFixed(4)}`;

/**
 * One line of the last day's usage for the tooltip, from the `pilotfish.stats` result; undefined
 * when the result is not a report.
 */
export function statsSummary(result: unknown): string | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const report = result as StatsReport;
  const t = report.total;
  if (!t || typeof t.requests !== 'number') return undefined;
  let line =
    `Last 24 h: ${t.requests} requests, ${percent(t.cache_hit_rate)} from the cache, ` +
    `${t.accepted ?? 0} of ${t.shown ?? 0} suggestions accepted (${percent(t.acceptance_rate)}), ${usd(t.cost_usd)} spent`;
  const s = report.saving;
  if (s?.priciest_model) {
    line += `; routing saved ${usd(s.saved_usd)}` + (typeof s.ratio === 'number' ? ` (${s.ratio.toFixed(1)}× cheaper than all on ${s.priciest_model})` : '');
  }
  return line;
}

export interface StatusText {
  text: string;
  tooltip: string;
  /** True when the item should use the error/warning colour. */
  alert: boolean;
}

/** "84 ms", "1.2 s", "2 min 5 s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '? ms';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** Long model names are cut so the status bar stays readable. */
export function shortModel(model: string, max = 28): string {
  return model.length <= max ? model : model.slice(0, max - 1) + '…';
}

const ICON = '$(sparkle)';

/** The status text, with the usage summary (if any) as the tooltip's last line. */
export function formatStatusWithStats(state: StatusState, stats: string | undefined): StatusText {
  const s = formatStatus(state);
  return stats ? { ...s, tooltip: `${s.tooltip}\n${stats}` } : s;
}

export function formatStatus(state: StatusState): StatusText {
  switch (state.kind) {
    case 'starting':
      return { text: `$(sync~spin) Pilotfish`, tooltip: 'Pilotfish: starting the language server', alert: false };
    case 'ready':
      return { text: `${ICON} Pilotfish`, tooltip: 'Pilotfish: ready — no request answered yet', alert: false };
    case 'stopped':
      return {
        text: `$(error) Pilotfish`,
        tooltip: `Pilotfish: the language server is not running${state.message ? ` — ${state.message}` : ''}`,
        alert: true,
      };
    case 'completion': {
      const { info, ms } = state;
      const via = info.source === 'model' ? '' : ` (${info.source})`;
      return {
        text: `${ICON} ${shortModel(info.model)}${via} · ${formatDuration(ms)}`,
        tooltip: `Pilotfish: last suggestion from ${info.model}, ${info.source === 'model' ? 'a model call' : `from the ${info.source} cache`}, ${info.chars} chars in ${formatDuration(ms)}`,
        alert: false,
      };
    }
    case 'empty':
      return {
        text: `${ICON} no suggestion · ${formatDuration(state.ms)}`,
        tooltip: `Pilotfish: the last request had no suggestion (${formatDuration(state.ms)})` +
          (state.last ? `; the one before came from ${state.last.model}` : ''),
        alert: false,
      };
    case 'running':
      return { text: `$(sync~spin) Pilotfish: ${state.task}…`, tooltip: `Pilotfish: ${state.task} is running`, alert: false };
    case 'action':
      return {
        text: `${ICON} ${state.task}: ${shortModel(state.model)} · ${formatDuration(state.ms)}`,
        tooltip: `Pilotfish: ${state.task} answered by ${state.model} in ${formatDuration(state.ms)}` +
          (state.reason ? ` — ${state.reason}` : ''),
        alert: false,
      };
    case 'cancelled':
      return {
        text: `${ICON} ${state.task} cancelled · ${formatDuration(state.ms)}`,
        tooltip: `Pilotfish: ${state.task} was cancelled after ${formatDuration(state.ms)}`,
        alert: false,
      };
    case 'failed':
      return {
        text: `$(warning) ${state.task} failed · ${formatDuration(state.ms)}`,
        tooltip: `Pilotfish: ${state.task} failed after ${formatDuration(state.ms)}: ${state.message}`,
        alert: true,
      };
  }
}

/** Structural view of an inline-completion item (VS Code's or a plain object). */
interface ItemLike {
  command?: { command?: string; arguments?: unknown[] } | null;
}

/** Reads the `pilotfish.accept` arguments of the first item of an inline-completion result. */
export function acceptInfoOf(result: unknown): AcceptInfo | undefined {
  let items: unknown;
  if (Array.isArray(result)) items = result;
  else if (typeof result === 'object' && result !== null) items = (result as { items?: unknown }).items;
  if (!Array.isArray(items)) return undefined;
  for (const item of items as ItemLike[]) {
    const cmd = item?.command;
    if (!cmd || cmd.command !== 'pilotfish.accept' || !Array.isArray(cmd.arguments)) continue;
    const arg = cmd.arguments[0] as Partial<Record<keyof AcceptInfo, unknown>> | undefined;
    if (!arg || typeof arg.model !== 'string') continue;
    return {
      ...(typeof arg.id === 'string' ? { id: arg.id } : {}),
      model: arg.model,
      source: typeof arg.source === 'string' ? arg.source : 'model',
      chars: typeof arg.chars === 'number' ? arg.chars : 0,
    };
  }
  return undefined;
}

/** Number of items in an inline-completion result. */
export function itemCount(result: unknown): number {
  if (Array.isArray(result)) return result.length;
  if (typeof result === 'object' && result !== null) {
    const items = (result as { items?: unknown }).items;
    if (Array.isArray(items)) return items.length;
  }
  return 0;
}
