// The plan's ProgressiveImageLoader: the thumbnail first; with ``priority`` (the opened
// asset), the high-res image is fetched and decoded in the background and then swapped in.
// A high-res load that fails (a dropped connection, a busy server) is tried again with a
// growing pause, so one bad response never leaves the viewer on the thumbnail for good;
// ``data-high-res`` says where it stands: pending, retrying, failed (given up) or shown.
import { useEffect, useState } from "react";
import { type Asset, RETRY_MS } from "../api";
import { imageShown } from "../perf";

interface Props {
  asset: Asset;
  index?: number;
  priority?: boolean;
  highResUrl?: string | null;
}

type HighRes = "pending" | "retrying" | "failed" | "shown";

export function ProgressiveImageLoader({ asset, index, priority = false, highResUrl }: Props) {
  const [state, setState] = useState<"loading" | "loaded" | "error">("loading");
  const [src, setSrc] = useState(asset.thumbnail_url);
  const [quality, setQuality] = useState<"thumbnail" | "high">("thumbnail");
  const [highRes, setHighRes] = useState<HighRes>("pending");

  useEffect(() => {
    setSrc(asset.thumbnail_url);
    setQuality("thumbnail");
    setState("loading");
    setHighRes("pending");
  }, [asset.id, asset.thumbnail_url]);

  useEffect(() => {
    if (!priority || !highResUrl || asset.type !== "image") return;
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const attempt = (failures: number) => {
      const image = new Image();
      image.src = highResUrl;
      image.decode().then(
        () => {
          if (!live) return;
          setSrc(highResUrl);
          setQuality("high");
          setHighRes("shown");
        },
        () => {
          if (!live) return;
          const pause = RETRY_MS[failures];
          if (pause === undefined) {
            setHighRes("failed");
            return;
          }
          setHighRes("retrying");
          timer = setTimeout(() => attempt(failures + 1), pause);
        },
      );
    };
    attempt(0);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [priority, highResUrl, asset.type]);

  if (!src) return <div className="image-fallback">no preview</div>;
  return (
    <div
      className="progressive-image-loader"
      data-state={state}
      data-quality={quality}
      data-high-res={priority ? highRes : undefined}
    >
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
