// The opened asset: its high-res URL is asked for only now (GET /v1/assets/{id}), and the
// ProgressiveImageLoader shows the thumbnail until the high-res image has decoded.
import { useEffect, useState } from "react";
import { type Asset, getJson } from "../api";
import { ProgressiveImageLoader } from "./ProgressiveImageLoader";

export function Viewer({ asset, onClose }: { asset: Asset; onClose: () => void }) {
  const [highRes, setHighRes] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const controller = new AbortController();
    getJson<Asset>(`/v1/assets/${asset.id}`, { signal: controller.signal })
      .then((full) => setHighRes(full.high_res_url ?? null))
      .catch((e: unknown) => {
        if (!controller.signal.aborted) setError(String(e));
      });
    return () => controller.abort();
  }, [asset.id]);
  return (
    <div className="viewer" role="dialog" aria-modal="true" aria-label={asset.prompt} onClick={onClose}>
      <div className="viewer-body" onClick={(e) => e.stopPropagation()}>
        {asset.type === "video" && highRes ? (
          <video className="viewer-video" src={highRes} poster={asset.thumbnail_url ?? undefined} controls preload="metadata" />
        ) : (
          <ProgressiveImageLoader asset={asset} priority highResUrl={highRes} />
        )}
        <div className="viewer-info">
          <p className="viewer-prompt">{asset.prompt}</p>
          <p className="viewer-meta">
            {asset.type} · {asset.quality} · {asset.model_type ?? "plain"} · {asset.status} ·{" "}
            {new Date(asset.created_at).toLocaleString("en")}
          </p>
          {error && <p className="error">{error}</p>}
          <button type="button" className="viewer-close" onClick={onClose}>
            Close (Esc)
          </button>
        </div>
      </div>
    </div>
  );
}
