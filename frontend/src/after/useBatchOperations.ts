// The plan's useBatchOperations and BatchOperationsService: selection by asset (click,
// shift-click ranges, select all loaded) and by generation job, and the batch operations of
// /v1/batch. One request per operation whatever its size; a large one runs in the background
// and its progress is polled. Undo and redo are the service's, in order.
import { useCallback, useRef, useState } from "react";
import { type Asset, type Operation, type OperationKind, ApiError, request } from "../api";

export interface BatchSelection {
  selectedIds: Set<string>;
  selectedJobs: Set<string>;
  mode: "individual" | "job" | "mixed";
  anchor: number | null;
}

export interface BatchProgress {
  label: string;
  done: number;
  total: number;
}

const EMPTY: BatchSelection = {
  selectedIds: new Set(),
  selectedJobs: new Set(),
  mode: "individual",
  anchor: null,
};
const POLL_MS = 250;
const POLL_LIMIT_MS = 10 * 60 * 1000;

async function settle(response: Response, onProgress: (op: Operation) => void): Promise<Operation> {
  let op = ((await response.json()) as { operation: Operation }).operation;
  const deadline = performance.now() + POLL_LIMIT_MS;
  while (op.status === "running") {
    onProgress(op);
    if (performance.now() > deadline) throw new Error(`operation ${op.id} still running`);
    await new Promise((resolve) => window.setTimeout(resolve, POLL_MS));
    const next = await request(`/v1/batch/operations/${op.id}`);
    op = ((await next.json()) as { operation: Operation }).operation;
  }
  onProgress(op);
  return op;
}

export function useBatchOperations(assets: Asset[]) {
  const [selection, setSelection] = useState<BatchSelection>(EMPTY);
  const [progress, setProgress] = useState<BatchProgress | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [lastKind, setLastKind] = useState<string | null>(null);
  const busy = useRef(false);

  const toggle = useCallback(
    (index: number, extend: boolean) => {
      setSelection((prev) => {
        const ids = new Set(prev.selectedIds);
        if (extend && prev.anchor !== null) {
          const [from, to] = [Math.min(prev.anchor, index), Math.max(prev.anchor, index)];
          for (let i = from; i <= to && i < assets.length; i++) ids.add(assets[i].id);
        } else {
          const id = assets[index]?.id;
          if (id === undefined) return prev;
          if (ids.has(id)) ids.delete(id);
          else ids.add(id);
        }
        const mode = prev.selectedJobs.size > 0 ? "mixed" : "individual";
        return { ...prev, selectedIds: ids, mode, anchor: index };
      });
    },
    [assets],
  );

  const selectJob = useCallback(
    (jobId: string) => {
      setSelection((prev) => {
        const ids = new Set(prev.selectedIds);
        for (const asset of assets) if (asset.job_id === jobId) ids.add(asset.id);
        const jobs = new Set(prev.selectedJobs).add(jobId);
        return { ...prev, selectedIds: ids, selectedJobs: jobs, mode: "job" };
      });
    },
    [assets],
  );

  const selectAll = useCallback(() => {
    setSelection((prev) => ({
      ...prev,
      selectedIds: new Set(assets.map((a) => a.id)),
      mode: prev.selectedJobs.size > 0 ? "mixed" : "individual",
    }));
  }, [assets]);

  const clearSelection = useCallback(() => setSelection(EMPTY), []);

  const selectedCount = selection.selectedIds.size;
  const hasSelection = selectedCount > 0 || selection.selectedJobs.size > 0;

  const exclusive = async <T,>(label: string, work: () => Promise<T>): Promise<T | null> => {
    if (busy.current) return null;
    busy.current = true;
    setProgress({ label, done: 0, total: 0 });
    try {
      return await work();
    } catch (error) {
      setMessage(error instanceof ApiError ? error.message : String(error));
      return null;
    } finally {
      busy.current = false;
      setProgress(null);
    }
  };

  const body = () =>
    JSON.stringify({
      asset_ids: [...selection.selectedIds],
      job_ids: [...selection.selectedJobs],
    });

  const track = (label: string) => (op: Operation) =>
    setProgress({ label, done: op.done, total: op.total });

  /** Runs ``kind`` on the selection; resolves to the ids and jobs it covered, or null. */
  const run = async (kind: OperationKind, label: string) => {
    if (!hasSelection) return null;
    const covered = { ids: selection.selectedIds, jobs: selection.selectedJobs };
    const payload = body();
    const op = await exclusive(label, async () => {
      const response = await request(`/v1/batch/${kind}`, { method: "POST", body: payload });
      return settle(response, track(label));
    });
    if (op === null) return null;
    setSelection(EMPTY);
    setLastKind(kind);
    setMessage(`${label}: ${op.done} asset${op.done === 1 ? "" : "s"}`);
    return covered;
  };

  const history = async (which: "undo" | "redo") => {
    const label = which === "undo" ? "Undo" : "Redo";
    const op = await exclusive(label, async () => {
      const response = await request(`/v1/batch/${which}`, { method: "POST" });
      return settle(response, track(label));
    });
    if (op === null) return false;
    setMessage(`${label}: ${op.kind} of ${op.done} asset${op.done === 1 ? "" : "s"}`);
    return true;
  };

  const download = async () => {
    if (!hasSelection) return;
    const payload = body();
    await exclusive("Download", async () => {
      const response = await request("/v1/batch/download", { method: "POST", body: payload });
      const blob = await response.blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = "assets.zip";
      link.click();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      setMessage(`Downloaded ${response.headers.get("Content-Length") ?? "?"} bytes`);
    });
  };

  return {
    selection,
    selectedCount,
    hasSelection,
    progress,
    message,
    lastKind,
    toggle,
    selectJob,
    selectAll,
    clearSelection,
    run,
    undo: () => history("undo"),
    redo: () => history("redo"),
    download,
  };
}
