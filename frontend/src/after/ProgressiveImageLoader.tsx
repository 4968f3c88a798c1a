// The plan's ProgressiveImageLoader: the thumbnail first; with ``priority`` (the opened
// asset), the high-res image is fetched and decoded in the background and then swapped in.
import { useEffect, useState } from "react";
import type { Asset } from "../api";
import { imageShown } from "../perf";

interface Props {
  asset: Asset;
  index?: number;
  priority?: boolean;
  highResUrl?: string | null;
}

export function ProgressiveImageLoader({ asset, index, priority = false, highResUrl }: Props) {
  const [state, setState] = useState<"loading" | "loaded" | "error">("loading");
  const [src, setSrc] = useState(asset.thumbnail_url);
  const [quality, setQuality] = useState<"thumbnail" | "high">("thumbnail");

  useEffect(() => {
    setSrc(asset.thumbnail_url);
    setQuality("thumbnail");
    setState("loading");
  }, [asset.id, asset.thumbnail_url]);

  useEffect(() => {
    if (!priority || !highResUrl || asset.type !== "image") return;
    let live = true;
    const image = new Image();
    image.src = highResUrl;
    image.decode().then(
      () => {
        if (!live) return;
        setSrc(highResUrl);
        setQuality("high");
      },
      () => undefined,
    );
    return () => {
      live = false;
    };
  }, [priority, highResUrl, asset.type]);

  if (!src) return <div className="image-fallback">no preview</div>;
  return (
    <div className="progressive-image-loader" data-state={state} data-quality={quality}>
      {state === "loading" && <span className="spinner" aria-hidden="true" />}
      {state === "error" && <div className="image-fallback">could not load</div>}
      <img
        src={src}
        alt={asset.prompt}
        className="progressive-image"
        draggable={false}
        onLoad={(event) => {
          setState("loaded");
          if (index !== undefined) imageShown(index, event.currentTarget);
        }}
        onError={() => {
          setState("error");
          if (index !== undefined) imageShown(index, null);
        }}
      />
    </div>
  );
}
