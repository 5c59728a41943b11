// What every page here does the same way: one status line that says what is happening (and that tests
// wait on), errors shown where people read them, and buttons disabled while their work runs.
export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`The page has no #${id}.`);
  return element as T;
};

/** Sets #status: `state` is "ready", "error" or what is being done ("opening", "paying", …). */
export function status(state: string, text: string): void {
  const line = $("status");
  line.dataset.state = state;
  line.textContent = text;
  line.setAttribute("role", state === "error" ? "alert" : "status");
}

let busy = false;

/** Runs one piece of work at a time behind the status line; its result is the status text. */
export async function run(doing: string, work: () => Promise<string>): Promise<void> {
  if (busy) return;
  busy = true;
  document.body.setAttribute("aria-busy", "true");
  status(doing, `${doing[0]!.toUpperCase()}${doing.slice(1)}…`);
  try {
    status("ready", await work());
  } catch (error) {
    status("error", messageOf(error));
  } finally {
    busy = false;
    document.body.removeAttribute("aria-busy");
    dispatchEvent(new Event("paychan-idle"));
  }
}

export function isBusy(): boolean {
  return busy;
}

export function messageOf(error: unknown): string {
  const e = error as { shortMessage?: string; message?: string; code?: number };
  if (e?.code === 4001) return "You declined the request in your wallet.";
  return e?.shortMessage ?? e?.message ?? String(error);
}

export function element<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}
