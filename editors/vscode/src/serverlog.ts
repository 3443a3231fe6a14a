// Pure: how a line the server writes to stderr goes to the Pilotfish output channel.
// No `vscode` import.

/** The output-channel methods a server line is logged with. */
export type ChannelLevel = 'error' | 'warn' | 'info';

export interface ServerLogLine {
  level: ChannelLevel;
  text: string;
}

// tracing_subscriber's plain format: "2026-11-22T10:08:36.616245Z  INFO pilotfish::lsp: …".
const TRACING = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z\s+(ERROR|WARN|INFO|DEBUG|TRACE)\s(.*)$/;

/**
 * vscode-languageclient logs every stderr line as an error, which made a healthy server's
 * log (it logs with `tracing` to stderr) read as a list of failures. The level of a tracing
 * line picks the method instead; its time stamp is dropped (the channel adds its own) and
 * its level word kept. DEBUG and TRACE go out as info: the channel hides its own debug
 * level by default, and whoever set `pilotfish.log` to debug wants to see them. Any other
 * line continues a multi-line message and keeps the level of the line before it — except
 * a panic or a fatal error, and anything before the first tracing line, which are errors.
 */
export function serverLogLine(line: string, previous?: ChannelLevel): ServerLogLine {
  const m = TRACING.exec(line);
  if (m) {
    const word = m[1];
    const level: ChannelLevel = word === 'ERROR' ? 'error' : word === 'WARN' ? 'warn' : 'info';
    return { level, text: `${word} ${m[2].trimStart()}` };
  }
  if (/^thread '.*' panicked/.test(line) || /^(error|pilotfish):/.test(line)) {
    return { level: 'error', text: line };
  }
  return { level: previous ?? 'error', text: line };
}
