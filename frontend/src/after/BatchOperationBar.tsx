// The plan's BatchOperationBar, with what its success criteria ask and its sketch leaves out:
// progress for long operations, and undo and redo (kept after the selection is cleared, so the
// last operation can be taken back).
import type { BatchProgress } from "./useBatchOperations";

interface Props {
  selectedCount: number;
  jobCount: number;
  progress: BatchProgress | null;
  message: string | null;
  canUndo: boolean;
  onDismiss: () => void;
  onDelete: () => void;
  onDownload: () => void;
  onUndo: () => void;
  onRedo: () => void;
  onClearSelection: () => void;
}

export function BatchOperationBar(props: Props) {
  const { selectedCount, jobCount, progress } = props;
  const selecting = selectedCount > 0 || jobCount > 0;
  if (!selecting && !progress && !props.canUndo) return null;
  const busy = progress !== null;
  return (
    <div className="batch-operation-bar" role="toolbar" aria-label="batch operations">
      <div className="selection-info">
        <span className="selected-count">
          {selectedCount} selected{jobCount > 0 && ` (${jobCount} job${jobCount === 1 ? "" : "s"})`}
        </span>
        {selecting && (
          <button type="button" className="clear-selection" onClick={props.onClearSelection}>
            Clear
          </button>
        )}
      </div>
      <div className="operation-buttons">
        <button type="button" className="dismiss-btn" disabled={busy || !selecting} onClick={props.onDismiss}>
          Dismiss
        </button>
        <button type="button" className="download-btn" disabled={busy || !selecting} onClick={props.onDownload}>
          Download
        </button>
        <button type="button" className="delete-btn" disabled={busy || !selecting} onClick={props.onDelete}>
          Delete
        </button>
        <button type="button" className="undo-btn" disabled={busy} onClick={props.onUndo} title="Ctrl+Z">
          Undo
        </button>
        <button type="button" className="redo-btn" disabled={busy} onClick={props.onRedo} title="Ctrl+Shift+Z">
          Redo
        </button>
      </div>
      {progress && (
        <div className="processing-indicator" role="status">
          <span>{progress.label}…</span>
          <progress max={Math.max(progress.total, 1)} value={progress.done} />
          <span>
            {progress.done.toLocaleString("en")} / {progress.total.toLocaleString("en")}
          </span>
        </div>
      )}
      {!progress && props.message && <div className="batch-message" role="status">{props.message}</div>}
    </div>
  );
}
