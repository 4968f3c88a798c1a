// What the browser benchmark reads from the page, the same for both variants: when the first
// screen's images have decoded, what each search cost from keystroke to rendered results, and
// how to scroll the grid. Nothing here changes what the page does.

export interface SearchTiming {
  query: string;
  inputAt: number;
  renderedAt: number;
  results: number;
}

export interface BenchHooks {
  variant: string;
  firstScreenAt: number | null;
  searches: SearchTiming[];
  scrollRoot: () => HTMLElement | null;
  offsetOf: (index: number) => number;
  loaded: () => number;
  total: () => number | null;
}

declare global {
  interface Window {
    __bench: BenchHooks;
  }
}

// The default buffer (250 entries) would drop most of a 10,000-asset page's requests.
performance.setResourceTimingBufferSize(1_000_000);

export const bench: BenchHooks = {
  variant: "",
  firstScreenAt: null,
  searches: [],
  scrollRoot: () => null,
  offsetOf: () => 0,
  loaded: () => 0,
  total: () => null,
};
window.__bench = bench;

let expected = -1;
const decoded = new Set<number>();

function settle(): void {
  if (bench.firstScreenAt !== null || expected < 0) return;
  for (let i = 0; i < expected; i++) if (!decoded.has(i)) return;
  performance.mark("first-thumbnails");
  bench.firstScreenAt = performance.now();
}

/** How many images the first screen shows (set once, when the page knows). */
export function expectFirstScreen(count: number): void {
  if (expected >= 0) return;
  expected = count;
  settle();
}

/** An image of the grid at ``index`` loaded: counted once it has decoded too. */
export function imageShown(index: number, image: HTMLImageElement | null): void {
  if (bench.firstScreenAt !== null || decoded.has(index)) return;
  const done = () => {
    decoded.add(index);
    settle();
  };
  if (image) image.decode().then(done, done);
  else done();
}

let lastInput = { query: "", at: -1 };

// The key's own time stamp (when it was pressed): time a keystroke spends queued behind the
// page's earlier work counts too, as a person feels it.
let lastKeyAt = -1;
window.addEventListener("keydown", (event) => (lastKeyAt = event.timeStamp), true);

/** A keystroke changed the query. */
export function searchTyped(query: string): void {
  lastInput = { query, at: lastKeyAt >= 0 ? lastKeyAt : performance.now() };
  lastKeyAt = -1;
}

/** Results for ``query`` were committed: timed after the next frame's style, layout and paint
 * (a task queued from requestAnimationFrame runs once that frame is done). */
export function searchRendered(query: string, results: number): void {
  if (lastInput.at < 0 || lastInput.query !== query) return;
  const inputAt = lastInput.at;
  lastInput = { query: "", at: -1 };
  requestAnimationFrame(() =>
    setTimeout(() => bench.searches.push({ query, inputAt, renderedAt: performance.now(), results })),
  );
}
