// Pure: when VS Code's cancellation of an inline-completion request is passed on to the
// server. No `vscode` import.
//
// VS Code cancels the pending inline-completion request on every keystroke and sends the
// next one after its debounce (50 ms in Code 1.139). Passed on at once as `$/cancelRequest`,
// the cancel makes the server drop the request's model call before the next request arrives
// to take it over; with a model slower than the typing rhythm (a CPU), no call then ever
// finishes while the user types. The server ends a request by itself, empty, as soon as a
// newer request for the same document arrives, and hands the model call over to it when it
// can still serve (the user typed along its suggestion). So the cancel is held back: it
// reaches the server only when no newer request for the document followed within a grace
// period — the user stopped in mid-request (Escape, a click elsewhere, closing the editor).

/** How long a cancelled request waits for a newer one for its document before the cancel
 * goes to the server: VS Code's 50 ms debounce and the round trip through the extension
 * host, with room to spare. */
export const CANCEL_GRACE_MS = 500;

export interface PendingRequest {
  /** VS Code cancelled the request: `forward` (which sends `$/cancelRequest`) runs after the
   * grace period, unless a newer request for the document began or the server answered. */
  cancelled(forward: () => void): void;
  /** The server answered: there is nothing left to cancel. */
  settled(): void;
}

/** The inline-completion requests of each document, newest last. */
export class CancelHandover {
  private readonly newest = new Map<string, number>();
  private seq = 0;

  constructor(private readonly graceMs = CANCEL_GRACE_MS) {}

  /** A request for `doc` (its URI) is being sent. */
  begin(doc: string): PendingRequest {
    const mine = ++this.seq;
    this.newest.set(doc, mine);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let done = false;
    return {
      cancelled: (forward) => {
        if (done || timer !== undefined) return;
        timer = setTimeout(() => {
          timer = undefined;
          if (!done && this.newest.get(doc) === mine) forward();
        }, this.graceMs);
      },
      settled: () => {
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        timer = undefined;
        if (this.newest.get(doc) === mine) this.newest.delete(doc);
      },
    };
  }
}
