// The plan's VirtualizedAssetGrid on react-window's FixedSizeGrid: only the rows near the
// viewport exist in the DOM. Two changes from the plan's sketch: the cell renderer is a stable
// component fed through itemData (the plan defines it inside the component, so every render
// remounts every visible cell), and the grid spans the search's total, with placeholders for
// rows not loaded yet, asking for the next page when the viewport comes near them, and asking
// again when a page arrives that still leaves the viewport on placeholders (react-window tells
// only of a change of the visible rows, and a user who has scrolled to the end sees none).
import { type CSSProperties, type Ref, memo, useEffect, useMemo, useRef } from "react";
import { FixedSizeGrid as Grid, areEqual } from "react-window";
import type { Asset } from "../api";
import { PlaceholderCard } from "./AssetCard";

export interface CellData {
  assets: Asset[];
  columnCount: number;
  renderAsset: (asset: Asset, index: number) => JSX.Element;
}

const PREFETCH_ROWS = 8;

const Cell = memo(function Cell(props: {
  columnIndex: number;
  rowIndex: number;
  style: CSSProperties;
  data: CellData;
}) {
  const { columnIndex, rowIndex, style, data } = props;
  const index = rowIndex * data.columnCount + columnIndex;
  const asset = data.assets[index];
  return (
    <div style={style} className="grid-cell">
      {asset ? data.renderAsset(asset, index) : <PlaceholderCard />}
    </div>
  );
}, areEqual);

interface Props {
  assets: Asset[];
  total: number;
  itemHeight: number;
  itemWidth: number;
  containerHeight: number;
  containerWidth: number;
  renderAsset: (asset: Asset, index: number) => JSX.Element;
  onNeedMore: () => void;
  gridRef: Ref<Grid>;
  outerRef: Ref<HTMLDivElement>;
}

/** Room for a classic vertical scrollbar, so that the columns never overflow sideways. */
const SCROLLBAR_PX = 16;

export function columnsFor(width: number, itemWidth: number): number {
  return Math.max(1, Math.floor((width - SCROLLBAR_PX) / itemWidth));
}

export function VirtualizedAssetGrid(props: Props) {
  const { assets, total, itemHeight, itemWidth, containerHeight, containerWidth } = props;
  const columnCount = columnsFor(containerWidth, itemWidth);
  const columnWidth = Math.floor((containerWidth - SCROLLBAR_PX) / columnCount);
  const rowCount = Math.ceil(Math.max(total, assets.length) / columnCount);
  const { renderAsset, onNeedMore } = props;
  const itemData = useMemo<CellData>(
    () => ({ assets, columnCount, renderAsset }),
    [assets, columnCount, renderAsset],
  );
  const lastVisibleRow = useRef(0);
  const askIfNear = (visibleRowStopIndex: number) => {
    lastVisibleRow.current = visibleRowStopIndex;
    if ((visibleRowStopIndex + 1 + PREFETCH_ROWS) * columnCount >= assets.length) onNeedMore();
  };
  // A page arriving (or assets removed) is the event, whatever the visible rows.
  useEffect(() => askIfNear(lastVisibleRow.current), [assets.length, columnCount]);
  return (
    <Grid
      ref={props.gridRef}
      outerRef={props.outerRef}
      className="virtual-grid"
      columnCount={columnCount}
      columnWidth={columnWidth}
      height={containerHeight}
      rowCount={rowCount}
      rowHeight={itemHeight}
      width={containerWidth}
      itemData={itemData}
      overscanRowCount={2}
      onItemsRendered={({ visibleRowStopIndex }) => askIfNear(visibleRowStopIndex)}
    >
      {Cell}
    </Grid>
  );
}
