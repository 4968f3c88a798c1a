import { memo } from "react";
import type { Asset } from "../api";
import { ProgressiveImageLoader } from "./ProgressiveImageLoader";

interface Props {
  asset: Asset;
  index: number;
  selected: boolean;
  focused: boolean;
  onOpen: (index: number) => void;
  onToggle: (index: number, extend: boolean) => void;
  onSelectJob: (jobId: string) => void;
}

export const AssetCard = memo(function AssetCard(props: Props) {
  const { asset, index, selected, focused, onOpen, onToggle, onSelectJob } = props;
  const classes = ["asset-card", selected && "selected", focused && "focused"];
  return (
    <div
      className={classes.filter(Boolean).join(" ")}
      data-index={index}
      data-asset-id={asset.id}
      role="gridcell"
      aria-selected={selected}
      onClick={(event) => {
        if (event.shiftKey || event.ctrlKey || event.metaKey) onToggle(index, event.shiftKey);
        else onOpen(index);
      }}
    >
      <ProgressiveImageLoader asset={asset} index={index} />
      <label className="select-box" onClick={(event) => event.stopPropagation()}>
        <input
          type="checkbox"
          checked={selected}
          aria-label={`select ${asset.prompt}`}
          onChange={() => undefined}
          onClick={(event) => onToggle(index, event.shiftKey)}
        />
      </label>
      {asset.job_id !== null && (
        <button
          type="button"
          className="select-job"
          title="Select every asset of this generation job"
          onClick={(event) => {
            event.stopPropagation();
            onSelectJob(asset.job_id as string);
          }}
        >
          job
        </button>
      )}
      <div className="caption">
        {asset.type === "video" && <span className="badge">video</span>}
        <span className="prompt">{asset.prompt}</span>
      </div>
    </div>
  );
});

export function PlaceholderCard() {
  return <div className="asset-card placeholder" aria-busy="true" />;
}
