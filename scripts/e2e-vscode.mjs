// The VS Code part of scripts/e2e-editors: drives code-server's workbench in the test bed's
// Chromium with playwright-core (both from `scripts/testbed vscode`) and checks, from the
// DOM and the saved file, that editors/vscode works with the real server:
//   ghost text at the end of "    return " after typing there; Tab accepts it (the saved
//   line); the status bar names the model; ctrl+alt+e opens the Explain page; the status
//   bar names the model that explained; typing a word at a slow typist's pace (a key every
//   400 ms, faster than the model) cancels no model call on the server (from the usage log:
//   VS Code cancels its request at each keystroke and asks again 50 ms later; a slow
//   model's call must outlive that cancel and pass to the next request); then it opens
//   --other and goes back to --file by its tab (the shell script checks the server log for
//   the warm-up of the file come back to).
// A PNG of each state goes to --out. Prints one line per check on stdout,
//   RESULT <TAB> 0|1 <TAB> name <TAB> detail
// for the shell script to count; progress goes to stderr. Exit 0 when every check held.
// It starts nothing but the browser, which it closes (playwright also kills it on SIGTERM).
//
//   node scripts/e2e-vscode.mjs --url http://127.0.0.1:PORT --workspace DIR --file fib.py \
//     --other notes.py --line 5 --model KEY --out DIR [--wait SECONDS] [--usage-log FILE]
// Needs PILOTFISH_NODE_MODULES (playwright-core) and PILOTFISH_CHROMIUM from `testbed env`.
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    workspace: { type: 'string' },
    file: { type: 'string', default: 'fib.py' },
    other: { type: 'string', default: 'notes.py' },
    line: { type: 'string', default: '5' },
    model: { type: 'string' },
    out: { type: 'string' },
    wait: { type: 'string', default: '240' },
    'usage-log': { type: 'string' },
  },
});
for (const k of ['url', 'workspace', 'model', 'out']) {
  if (!opt[k]) {
    console.error(`e2e-vscode: --${k} is required`);
    process.exit(2);
  }
}
const modules = process.env.PILOTFISH_NODE_MODULES;
if (!modules) {
  console.error('e2e-vscode: PILOTFISH_NODE_MODULES is not set (eval "$(scripts/testbed env)")');
  process.exit(2);
}
const { chromium } = createRequire(path.join(modules, '/'))('playwright-core');

const waitMs = Number(opt.wait) * 1000;
const line = Number(opt.line);
const filePath = path.join(opt.workspace, opt.file);
const original = fs.readFileSync(filePath, 'utf8');
const log = (msg) => console.error(`    vscode: ${msg}`);
let failed = 0;
function result(ok, name, detail = '') {
  if (!ok) failed++;
  console.log(['RESULT', ok ? 0 : 1, name, detail.replace(/[\t\n]/g, ' ')].join('\t'));
}
// Monaco renders spaces in view lines as U+00A0.
const plain = (s) => (s ?? '').replace(/\u00a0/g, ' ');

const browser = await chromium.launch({
  executablePath: process.env.PILOTFISH_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // As root there is no sandbox; the rest keep Chromium off the closed network
  // (shared/TESTBED.md: without them it retries refused connections at every start).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const shot = async (name) => {
  await page.screenshot({ path: path.join(opt.out, `vscode-${name}.png`) });
  log(`screenshot ${path.join(opt.out, `vscode-${name}.png`)}`);
};
const status = page.locator('[id="pilotfish.pilotfish.pilotfish.status"]');
const statusText = async () => plain(await status.textContent({ timeout: 5000 }).catch(() => '')).trim();
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
// A tab by its file's name exactly (the Explain page's name starts with the file's).
const tab = (name, active = false) => page.locator(`.tab${active ? '.active' : ''}[data-resource-name="${name}"]`).first();
const modelRe = new RegExp(`(^|[^\\w-])${escapeRe(opt.model)}([^\\w-]|$)`);

/** The text of the active editor's line N (1-based) without ghost text, from the DOM. */
async function editorLine(n) {
  return page.evaluate((n) => {
    const editor = document.querySelector('.editor-instance .monaco-editor.focused')
      ?? document.querySelector('.editor-instance .monaco-editor');
    if (!editor) return undefined;
    const numbers = [...editor.querySelectorAll('.margin-view-overlays .line-numbers')];
    const lines = [...editor.querySelectorAll('.view-lines .view-line')];
    // Both are absolutely positioned by `top`; match the line number's row.
    const num = numbers.find((e) => e.textContent.trim() === String(n));
    if (!num) return undefined;
    const top = num.closest('[style*="top"]')?.style.top;
    const row = lines.find((l) => l.style.top === top);
    if (!row) return undefined;
    const copy = row.cloneNode(true);
    copy.querySelectorAll('[class*="ghost-text"]').forEach((g) => g.remove());
    return copy.textContent;
  }, n).then(plain);
}

try {
  log(`open ${opt.url} on ${opt.workspace}`);
  await page.goto(`${opt.url}/?folder=${encodeURIComponent(opt.workspace)}`, { timeout: 60_000 });
  await page.waitForSelector('.monaco-workbench', { timeout: 90_000 });
  // The extension activates on startup finished and says "ready" once the client runs.
  await status.waitFor({ timeout: 90_000 });
  await page.waitForFunction(
    () => !/starting/.test(document.getElementById('pilotfish.pilotfish.pilotfish.status')?.getAttribute('aria-label') ?? 'starting'),
    null, { timeout: 60_000 },
  ).catch(() => undefined);
  log(`status: ${await statusText()} (${await status.getAttribute('aria-label')})`);

  // Open the file from the explorer, go to the end of line N and type its last space again:
  // VS Code asks for inline completions on the edit, as it does while the user types.
  await page.locator('.explorer-folders-view .monaco-list-row', { hasText: opt.file }).first().dblclick({ timeout: 30_000 });
  await page.locator('.editor-instance .monaco-editor .view-lines').first().waitFor({ timeout: 30_000 });
  await page.locator('.tab.active', { hasText: opt.file }).waitFor({ timeout: 30_000 });
  await page.keyboard.press('Control+G');
  await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
  await page.keyboard.type(String(line));
  await page.keyboard.press('Enter');
  await page.keyboard.press('End');
  await page.keyboard.press('Backspace');
  await page.keyboard.type(' ');
  // The line as the file has it, once the editor shows the retyped space (on a busy machine
  // the DOM can lag the keys).
  const fileLine = original.split('\n')[line - 1] ?? '';
  const before = await waitFor(async () => {
    const l = plain(await editorLine(line));
    return l === fileLine ? l : undefined;
  }, 10_000) ?? plain(await editorLine(line));
  log(`line ${line}: ${JSON.stringify(before)}; waiting up to ${opt.wait} s for ghost text`);

  // 1. Ghost text.
  const t0 = Date.now();
  const ghostShown = await page.locator('.monaco-editor .ghost-text-decoration').first()
    .waitFor({ timeout: waitMs }).then(() => true, () => false);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  const ghost = plain(await page.$$eval('.monaco-editor .ghost-text-decoration', (els) => els.map((e) => e.textContent).join('')));
  const ghostBlock = plain(await page.$$eval('.monaco-editor .ghost-text .view-line, .monaco-editor .ghost-text-decoration-preview',
    (els) => els.map((e) => e.textContent).join('\n')));
  await shot('ghost-text');
  result(ghostShown && ghost.trim() !== '', `VS Code: ghost text at "${before}" (${ghost}${ghostBlock ? ' …' : ''}; ${secs} s)`,
    ghostShown ? `empty ghost text, see ${opt.out}/vscode-ghost-text.png` : `none within ${opt.wait}s, see ${opt.out}/vscode-ghost-text.png`);

  // 3a. The status bar names the model that answered the completion.
  const afterCompletion = await statusText();
  result(ghostShown && modelRe.test(afterCompletion) && !/no suggestion/.test(afterCompletion),
    `VS Code: status bar names the model after the completion ("${afterCompletion}")`,
    `expected "${opt.model}" in it`);

  // 2. Tab accepts it: the line in the editor, and in the file once saved.
  if (ghostShown) {
    await page.keyboard.press('Tab');
    await page.waitForTimeout(1000);
    // A new suggestion may follow the accepted one; dismiss it, then save.
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+S');
    const saved = await waitFor(() => {
      const text = fs.readFileSync(filePath, 'utf8');
      return text !== original ? text : undefined;
    }, 15_000);
    const shown = await editorLine(line);
    await shot('accepted');
    const savedLine = (saved ?? original).split('\n')[line - 1] ?? '';
    const expected = (before + ghost).trimEnd();
    const ok = saved !== undefined && savedLine.trimEnd() === expected && (shown ?? '').trimEnd() === expected;
    result(ok, `VS Code: Tab accepts it (line ${line} is now "${savedLine}")`,
      saved === undefined ? 'the file was not saved with a change' : `expected "${expected}"; the editor shows "${shown}"`);
  } else {
    result(false, 'VS Code: Tab accepts it', 'no ghost text to accept');
  }

  // 4. Explain with the default keybinding, cursor on line 1 (the enclosing function).
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+G');
  await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
  await page.keyboard.type('1');
  await page.keyboard.press('Enter');
  log(`ctrl+alt+e; waiting up to ${opt.wait} s for the Explain page`);
  const t1 = Date.now();
  await page.keyboard.press('Control+Alt+E');
  const explainTab = page.locator('.tab.active', { hasText: /-explain\.md/ });
  const opened = await explainTab.waitFor({ timeout: waitMs }).then(() => true, () => false);
  let heading = '';
  if (opened) {
    heading = await waitFor(async () => {
      const l = await editorLine(1);
      return l && l.startsWith('# Pilotfish: Explain') ? l : undefined;
    }, 15_000) ?? plain(await editorLine(1)) ?? '';
  }
  const explainSecs = ((Date.now() - t1) / 1000).toFixed(1);
  const afterExplain = await waitFor(async () => {
    const s = await statusText();
    return /^Explain: /.test(s) || /failed/.test(s) ? s : undefined;
  }, 15_000) ?? await statusText();
  await shot('explain');
  const pageText = await page.$$eval('.editor-instance .monaco-editor.focused .view-lines .view-line',
    (els) => els.map((e) => ({ top: parseFloat(e.style.top) || 0, text: e.textContent }))
      .sort((a, b) => a.top - b.top).map((e) => e.text).join('\n'));
  fs.writeFileSync(path.join(opt.out, 'vscode-explain.txt'), plain(pageText) + '\n');
  const body = plain(pageText).split('\n').slice(1).filter((l) => l.trim() !== '');
  result(opened && heading.startsWith('# Pilotfish: Explain') && body.length > 0,
    `VS Code: ctrl+alt+e opens the Explain page ("${heading}"; ${explainSecs} s)`,
    opened ? `its first line is "${heading}", then ${body.length} lines` : `no *-explain.md tab within ${opt.wait}s, see ${opt.out}/vscode-explain.png`);

  // 3b. The status bar names the model that explained.
  result(new RegExp(`^Explain: ${escapeRe(opt.model)} `).test(afterExplain),
    `VS Code: status bar names the model after Explain ("${afterExplain}")`,
    `expected "Explain: ${opt.model} · …"`);
  // 5. Typing while the model works: no model call is cancelled by VS Code's keystrokes.
  if (opt['usage-log']) {
    await page.keyboard.press('Escape');
    // Back from the Explain page to the file.
    await tab(opt.file).click({ timeout: 10_000 });
    await tab(opt.file, true).waitFor({ timeout: 10_000 });
    await page.keyboard.press('Control+G');
    await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
    await page.keyboard.type(String(line + 1));
    await page.keyboard.press('Enter');
    await page.keyboard.press('End');
    const word = '    total = fibonacci';
    log(`typing "${word}" on line ${line + 1}, a key every 400 ms`);
    const t2 = Date.now();
    for (const ch of word) {
      await page.keyboard.type(ch);
      await page.waitForTimeout(400);
    }
    // Let the last request's call finish and its line reach the log.
    await waitFor(() => (callsSince(t2).some((c) => c.outcome === 'ok' || c.outcome === 'empty') ? true : undefined),
      Math.min(waitMs, 120_000));
    await page.waitForTimeout(1000);
    const calls = callsSince(t2);
    const by = {};
    for (const c of calls) by[c.outcome ?? '?'] = (by[c.outcome ?? '?'] ?? 0) + 1;
    const summary = Object.entries(by).map(([k, n]) => `${n} ${k}`).join(', ') || 'none';
    result(calls.length > 0 && !by.cancelled,
      `VS Code: typing ${word.length} keys while the model works cancels no model call (${calls.length} calls: ${summary})`,
      `see ${opt['usage-log']}`);
    await page.keyboard.press('Escape');
  }

  // 6. Another file, then back by the tab: VS Code asks for code actions at the cursor when
  //    the editor's model changes, and that request is what warms the model server for the
  //    file come back to. scripts/e2e-editors reads the server log for it once code-server
  //    has written the log (on exit). The cursor first goes to the last line, where no
  //    suggestion is cached (one would answer the next request there without the model).
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+G');
  await page.locator('.quick-input-widget input').waitFor({ timeout: 10_000 });
  await page.keyboard.type(String(original.trimEnd().split('\n').length));
  await page.keyboard.press('Enter');
  await page.keyboard.press('End');
  await page.waitForTimeout(2000);
  await page.locator('.explorer-folders-view .monaco-list-row', { hasText: opt.other }).first().dblclick({ timeout: 30_000 });
  await tab(opt.other, true).waitFor({ timeout: 30_000 });
  await page.waitForTimeout(4000);
  log(`back to ${opt.file} by its tab`);
  await tab(opt.file).click({ timeout: 10_000 });
  await tab(opt.file, true).waitFor({ timeout: 10_000 });
  // The rest that makes a new place, and the warm-up's read of fib.py's short prompt.
  await page.waitForTimeout(8000);
  await shot('back');
} catch (error) {
  await shot('error').catch(() => undefined);
  result(false, 'VS Code: the driver ran to the end', `${error instanceof Error ? error.message.split('\n')[0] : error} (see ${opt.out}/vscode-error.png)`);
} finally {
  await browser.close();
}
process.exit(failed === 0 ? 0 : 1);

/** The completion model calls (requests' and prefetches') the usage log holds since `t0`. */
function callsSince(t0) {
  let text = '';
  try {
    text = fs.readFileSync(opt['usage-log'], 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      return {};
    }
  }).filter((e) => e.event === 'call' && e.task === 'complete' && Date.parse(e.ts) >= t0);
}

/** Polls FN (sync or async) every 250 ms until it returns something defined, or TIMEOUT ms. */
async function waitFor(fn, timeout) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) return undefined;
    await new Promise((r) => setTimeout(r, 250));
  }
}
