// The plan's SimplifiedWorkspace: search bar, virtualized grid, batch bar, the opened asset,
// and the keyboard shortcuts over them.
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import type { FixedSizeGrid } from "react-window";
import type { Asset } from "../api";
import { bench, expectFirstScreen } from "../perf";
import { AssetCard } from "./AssetCard";
import { BatchOperationBar } from "./BatchOperationBar";
import { VirtualizedAssetGrid, columnsFor } from "./VirtualizedAssetGrid";
import { Viewer } from "./Viewer";
import { WorkspaceSearchBar } from "./WorkspaceSearchBar";
import { useBatchOperations } from "./useBatchOperations";
import { useShortcuts } from "./useShortcuts";
import { type AssetList, NEXT_PAGE, useWorkspaceSearch } from "./useWorkspaceSearch";

/** Cells of the grid: the total, or past a lower bound, what is loaded and a page more. */
function gridSpan(list: AssetList): number {
  const total = list.total ?? 0;
  if (list.totalIsExact) return total;
  return Math.max(total, list.assets.length + (list.next === null ? 0 : NEXT_PAGE));
}

function useSize(ref: React.RefObject<HTMLElement>) {
  const [size, setSize] = useState({ width: 0, height: 0 });
  useLayoutEffect(() => {
    const element = ref.current;
    if (!element) return;
    const measure = () => setSize({ width: element.clientWidth, height: element.clientHeight });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, [ref]);
  return size;
}

export function itemWidthFor(width: number): number {
  return width < 600 ? 130 : 200;
}

export function Workspace({ onSignOut }: { onSignOut: () => void }) {
  const { searchState, setSearchState, list, loadMore, reload, removeLocally } = useWorkspaceSearch();
  const batch = useBatchOperations(list.assets);
  const [opened, setOpened] = useState<number | null>(null);
  const [focused, setFocused] = useState(0);
  const searchInput = useRef<HTMLInputElement>(null);
  const area = useRef<HTMLDivElement>(null);
  const grid = useRef<FixedSizeGrid>(null);
  const outer = useRef<HTMLDivElement>(null);
  const { width, height } = useSize(area);
  const itemWidth = itemWidthFor(width);
  const itemHeight = itemWidth + 24;
  const columns = columnsFor(width, itemWidth);

  const listRef = useRef(list);
  listRef.current = list;
  bench.variant = "after";
  bench.scrollRoot = () => outer.current;
  bench.offsetOf = (index) => Math.floor(index / columns) * itemHeight;
  bench.loaded = () => listRef.current.assets.length;
  // A total beyond the server's count cap is a lower bound: the list's size is known only once
  // its last page has arrived.
  bench.total = () => {
    const l = listRef.current;
    if (l.total === null || l.totalIsExact) return l.total;
    return l.next === null ? l.assets.length : null;
  };

  useEffect(() => {
    if (list.total === null || width === 0) return;
    const rows = Math.ceil(height / itemHeight);
    expectFirstScreen(Math.min(list.total, list.assets.length, rows * columns));
  }, [list, width, height, itemHeight, columns]);

  const { toggle, selectJob } = batch;
  const isSelected = batch.selection.selectedIds;
  const openAt = useCallback((i: number) => {
    setFocused(i);
    setOpened(i);
  }, []);
  const toggleAt = useCallback(
    (i: number, extend: boolean) => {
      setFocused(i);
      toggle(i, extend);
    },
    [toggle],
  );
  const renderAsset = useCallback(
    (asset: Asset, index: number) => (
      <AssetCard
        asset={asset}
        index={index}
        selected={isSelected.has(asset.id)}
        focused={index === focused}
        onOpen={openAt}
        onToggle={toggleAt}
        onSelectJob={selectJob}
      />
    ),
    [isSelected, focused, openAt, toggleAt, selectJob],
  );

  const afterChange = async (kind: "dismiss" | "delete", label: string) => {
    const covered = await batch.run(kind, label);
    if (covered) removeLocally(covered.ids, covered.jobs);
  };
  const history = async (which: "undo" | "redo") => {
    if (await (which === "undo" ? batch.undo() : batch.redo())) reload();
  };

  const moveFocus = (delta: "left" | "right" | "up" | "down") => {
    const step = { left: -1, right: 1, up: -columns, down: columns }[delta];
    const next = Math.min(Math.max(focused + step, 0), Math.max(list.assets.length - 1, 0));
    setFocused(next);
    grid.current?.scrollToItem({ rowIndex: Math.floor(next / columns), columnIndex: next % columns });
  };

  useShortcuts({
    focusSearch: () => searchInput.current?.focus(),
    escape: () => (opened !== null ? setOpened(null) : batch.clearSelection()),
    selectAll: batch.selectAll,
    undo: () => void history("undo"),
    redo: () => void history("redo"),
    move: moveFocus,
    open: () => list.assets[focused] && setOpened(focused),
    toggleFocused: (extend) => batch.toggle(focused, extend),
  });

  const openedAsset = opened === null ? undefined : list.assets[opened];
  return (
    <div className="simplified-workspace" data-variant="after">
      <header className="workspace-header">
        <h1>Workspace</h1>
        <button type="button" className="sign-out" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      {searchState && (
        <WorkspaceSearchBar
          searchState={searchState}
          onSearchChange={setSearchState}
          totalResults={list.total}
          totalIsExact={list.totalIsExact}
          loading={list.loading}
          inputRef={searchInput}
        />
      )}
      {list.error && <div className="error" role="alert">{list.error}</div>}
      <div className="grid-area" ref={area}>
        {width > 0 && list.total === 0 && !list.loading && <p className="empty">No assets match.</p>}
        {width > 0 && list.total !== null && list.total > 0 && (
          <VirtualizedAssetGrid
            assets={list.assets}
            total={gridSpan(list)}
            itemWidth={itemWidth}
            itemHeight={itemHeight}
            containerWidth={width}
            containerHeight={height}
            renderAsset={renderAsset}
            onNeedMore={loadMore}
            gridRef={grid}
            outerRef={outer}
          />
        )}
      </div>
      <BatchOperationBar
        selectedCount={batch.selectedCount}
        jobCount={batch.selection.selectedJobs.size}
        progress={batch.progress}
        message={batch.message}
        canUndo={batch.lastKind !== null}
        onDismiss={() => void afterChange("dismiss", "Dismissed")}
        onDelete={() => void afterChange("delete", "Deleted")}
        onDownload={() => void batch.download()}
        onUndo={() => void history("undo")}
        onRedo={() => void history("redo")}
        onClearSelection={batch.clearSelection}
      />
      {openedAsset && <Viewer asset={openedAsset} onClose={() => setOpened(null)} />}
    </div>
  );
}
