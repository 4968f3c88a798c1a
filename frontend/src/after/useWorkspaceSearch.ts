// The plan's useWorkspaceSearch, answered by the service: the state is debounced (300 ms, as
// the plan's useDebounce), each settled state asks /v1/search for its first page, later pages
// come as the grid scrolls near the end, and the state is saved for the next visit.
import { useCallback, useEffect, useRef, useState } from "react";
import { type Asset, RETRY_MS, type SearchPage, getJson, query, request, transient } from "../api";
import { searchRendered } from "../perf";

export interface SearchState {
  query: string;
  filters: {
    type: "all" | "image" | "video";
    quality: "all" | "fast" | "high";
    model: "all" | "SDXL" | "WAN" | "Enhanced" | "none";
    status: "all" | "completed" | "generating" | "failed";
    start: string | null;
    end: string | null;
  };
  sort: { by: "date" | "prompt" | "quality" | "model"; order: "asc" | "desc" };
}

export const DEFAULT_SEARCH: SearchState = {
  query: "",
  filters: { type: "all", quality: "all", model: "all", status: "all", start: null, end: null },
  sort: { by: "date", order: "desc" },
};

export const DEBOUNCE_MS = 300;
const FIRST_PAGE = 50;
export const NEXT_PAGE = 200;

export interface AssetList {
  search: SearchState | null;
  assets: Asset[];
  total: number | null;
  /** false: `total` is the server's count cap, a lower bound ("1,000+"). */
  totalIsExact: boolean;
  next: string | null;
  loading: boolean;
  error: string | null;
}

const EMPTY: AssetList = {
  search: null,
  assets: [],
  total: null,
  totalIsExact: true,
  next: null,
  loading: true,
  error: null,
};

function useDebounce<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    if (settled === null) {
      setSettled(value);
      return;
    }
    const timer = window.setTimeout(() => setSettled(value), ms);
    return () => window.clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

function searchPath(search: SearchState, limit: number, cursor: string | null): string {
  const f = search.filters;
  return `/v1/search?${query({
    q: search.query.trim(),
    type: f.type,
    quality: f.quality,
    model: f.model,
    status: f.status,
    start: f.start,
    end: f.end,
    sort: search.sort.by,
    order: search.sort.order,
    limit,
    cursor,
  })}`;
}

function normalise(saved: Partial<SearchState> | undefined): SearchState {
  return {
    query: saved?.query ?? "",
    filters: { ...DEFAULT_SEARCH.filters, ...saved?.filters },
    sort: { ...DEFAULT_SEARCH.sort, ...saved?.sort },
  };
}

export function useWorkspaceSearch() {
  const [searchState, setSearchState] = useState<SearchState | null>(null);
  const settled = useDebounce(searchState, DEBOUNCE_MS);
  const [list, setList] = useState<AssetList>(EMPTY);
  const inflight = useRef<AbortController | null>(null);
  const [generation, setGeneration] = useState(0);
  // Failed loads in a row: a page that fails for a reason worth another try (no answer, a
  // busy or failing server) is asked for again after RETRY_MS[failures], by a timer (the grid
  // does not ask once the user has stopped scrolling) that alone asks while it is set (the
  // grid asks on every scroll frame, which would spend the tries at once).
  const failures = useRef(0);
  const retry = useRef<number | undefined>(undefined);
  const cancelRetry = useCallback(() => {
    window.clearTimeout(retry.current);
    retry.current = undefined;
  }, []);
  const failed = useCallback(
    (error: unknown, again: () => void) => {
      const pause = RETRY_MS[failures.current];
      const retrying = pause !== undefined && transient(error);
      const message = `${String(error)}${retrying ? " (trying again)" : ""}`;
      setList((latest) => ({ ...latest, loading: false, error: message }));
      cancelRetry();
      if (!retrying) return;
      failures.current += 1;
      retry.current = window.setTimeout(() => {
        retry.current = undefined;
        again();
      }, pause);
    },
    [cancelRetry],
  );
  useEffect(() => cancelRetry, [cancelRetry]);
  // A new search (or a reload asked for by the user) has all its tries.
  useEffect(() => {
    failures.current = 0;
  }, [settled]);

  useEffect(() => {
    const controller = new AbortController();
    getJson<{ state: Partial<SearchState> }>("/v1/search/state", { signal: controller.signal })
      .then((body) => setSearchState(normalise(body.state)))
      .catch((error: unknown) => {
        if (!controller.signal.aborted) {
          setSearchState(DEFAULT_SEARCH);
          setList({ ...EMPTY, loading: false, error: String(error) });
        }
      });
    return () => controller.abort();
  }, []);

  useEffect(() => {
    if (settled === null) return;
    inflight.current?.abort();
    cancelRetry();
    const controller = new AbortController();
    inflight.current = controller;
    setList((previous) => ({ ...previous, loading: true, error: null }));
    getJson<SearchPage>(searchPath(settled, FIRST_PAGE, null), { signal: controller.signal })
      .then((page) => {
        failures.current = 0;
        setList({
          search: settled,
          assets: page.assets,
          total: page.total,
          totalIsExact: page.total_is_exact,
          next: page.next_cursor,
          loading: false,
          error: null,
        });
      })
      .catch((error: unknown) => {
        if (!controller.signal.aborted) failed(error, () => setGeneration((n) => n + 1));
      });
    return () => controller.abort();
  }, [settled, generation, failed, cancelRetry]);

  const saved = useRef<SearchState | null>(null);
  useEffect(() => {
    if (settled === null) return;
    if (saved.current === null) {
      saved.current = settled;
      return;
    }
    if (saved.current === settled) return;
    saved.current = settled;
    request("/v1/search/state", { method: "PUT", body: JSON.stringify(settled) }).catch(() => {
      // the saved state is a convenience: a failed save leaves the search as it is
    });
  }, [settled]);

  useEffect(() => {
    if (list.search !== null && !list.loading) searchRendered(list.search.query, list.total ?? 0);
  }, [list]);

  const current = useRef(list);
  current.current = list;
  const loadMore = useCallback(function more() {
    const now = current.current;
    if (now.loading || now.next === null || now.search === null || retry.current !== undefined)
      return;
    // Marked at once: the grid asks again on every render until the page arrives.
    current.current = { ...now, loading: true };
    setList((latest) => ({ ...latest, loading: true }));
    const search = now.search;
    const controller = new AbortController();
    inflight.current = controller;
    getJson<SearchPage>(searchPath(search, NEXT_PAGE, now.next), { signal: controller.signal })
      .then((page) => {
        failures.current = 0;
        setList((latest) =>
          latest.search !== search
            ? latest
            : {
                ...latest,
                assets: [...latest.assets, ...page.assets],
                total: page.total,
                totalIsExact: page.total_is_exact,
                next: page.next_cursor,
                loading: false,
                error: null,
              },
        );
      })
      .catch((error: unknown) => {
        if (!controller.signal.aborted) failed(error, more);
      });
  }, [failed]);

  const reload = useCallback(() => {
    failures.current = 0;
    setGeneration((n) => n + 1);
  }, []);

  const removeLocally = useCallback((ids: Set<string>, jobs: Set<string>) => {
    setList((current) => {
      const kept = current.assets.filter(
        (a) => !ids.has(a.id) && !(a.job_id !== null && jobs.has(a.job_id)),
      );
      const removed = current.assets.length - kept.length;
      return {
        ...current,
        assets: kept,
        total: current.total === null ? null : Math.max(kept.length, current.total - removed),
      };
    });
  }, []);

  return { searchState, setSearchState, list, loadMore, reload, removeLocally };
}
