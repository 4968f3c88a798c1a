// The workspace as it was before the plan, kept as the baseline the plan's page is measured
// against in the same run (/app/?variant=before). Each part models one pre-plan behaviour:
//
// * loadEverything: AssetService.getUserAssets read the user's whole list before anything was
//   shown. Here every page of /v1/workspace, back to back (the service caps a page at 200);
//   the benchmark runs this variant against the service in URL_MODE=legacy, so each page's URLs
//   are signed the pre-plan way (one storage round trip per asset, bucket guessing).
// * signEach: generateBatchUrls was assets.map(generateAssetUrls) under Promise.all, one URL
//   call per asset. Here one GET /v1/assets/{id} per asset, for its URL. Not literally all at
//   once: Chromium fails fetches past a few thousand pending (net::ERR_INSUFFICIENT_RESOURCES),
//   so 10,000 at once would break the page; 64 in flight keep its six connections just as busy.
// * full-size images: the grid shows each asset's high-res file; there were no thumbnails.
// * no virtualization: every asset is a card in the DOM, whatever the list's length.
// * filtering in memory: the search box filters the loaded list on every keystroke (no
//   debounce, no server), the dismissed flag too, and re-renders the whole grid.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { type Asset, type WorkspacePage, getJson, query } from "../api";
import { bench, expectFirstScreen, imageShown, searchRendered, searchTyped } from "../perf";

const PAGE = 200;

async function loadEverything(): Promise<Asset[]> {
  const all: Asset[] = [];
  let cursor: string | null = null;
  do {
    const page: WorkspacePage = await getJson<WorkspacePage>(
      `/v1/workspace?${query({ mode: "all", limit: PAGE, cursor })}`,
    );
    all.push(...page.assets);
    cursor = page.next_cursor;
  } while (cursor !== null);
  return all;
}

const IN_FLIGHT = 64;

async function signEach(assets: Asset[]): Promise<Asset[]> {
  const signed: Asset[] = new Array(assets.length);
  let next = 0;
  const worker = async () => {
    while (next < assets.length) {
      const index = next++;
      const full = await getJson<Asset>(`/v1/assets/${assets[index].id}`);
      signed[index] = { ...assets[index], high_res_url: full.high_res_url ?? null };
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return signed;
}

function filterInMemory(assets: Asset[], text: string, type: string): Asset[] {
  const needle = text.trim().toLowerCase();
  return assets.filter(
    (a) =>
      !a.dismissed &&
      (type === "all" || a.type === type) &&
      (needle === "" || a.prompt.toLowerCase().includes(needle)),
  );
}

function FullSizeCard({ asset, index }: { asset: Asset; index: number }) {
  const url = asset.high_res_url;
  return (
    <figure className="asset-card before-card" data-index={index} data-asset-id={asset.id}>
      {url && asset.type === "image" && (
        <img
          src={url}
          alt={asset.prompt}
          onLoad={(e) => imageShown(index, e.currentTarget)}
          onError={() => imageShown(index, null)}
        />
      )}
      {url && asset.type === "video" && (
        <video
          src={url}
          muted
          preload="metadata"
          onLoadedData={() => imageShown(index, null)}
          onError={() => imageShown(index, null)}
        />
      )}
      <figcaption className="caption">
        <span className="prompt">{asset.prompt}</span>
      </figcaption>
    </figure>
  );
}

export function BeforeWorkspace({ onSignOut }: { onSignOut: () => void }) {
  const [assets, setAssets] = useState<Asset[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [text, setText] = useState("");
  const [type, setType] = useState("all");
  const root = useRef<HTMLDivElement>(null);

  useEffect(() => {
    loadEverything()
      .then(signEach)
      .then(setAssets)
      .catch((e: unknown) => setError(String(e)));
  }, []);

  const shown = useMemo(() => filterInMemory(assets ?? [], text, type), [assets, text, type]);

  bench.variant = "before";
  bench.scrollRoot = () => root.current;
  bench.offsetOf = (index) => {
    const card = root.current?.children[index] as HTMLElement | undefined;
    return card ? card.offsetTop - (root.current?.offsetTop ?? 0) : 0;
  };
  bench.loaded = () => shown.length;
  bench.total = () => (assets === null ? null : shown.length);

  useLayoutEffect(() => {
    const element = root.current;
    if (assets === null || !element) return;
    let visible = 0;
    for (const child of Array.from(element.children)) {
      if ((child as HTMLElement).offsetTop - element.offsetTop >= element.clientHeight) break;
      visible++;
    }
    expectFirstScreen(visible);
  }, [assets]);

  useEffect(() => {
    if (assets !== null) searchRendered(text.trim(), shown.length);
  }, [shown, assets, text]);

  return (
    <div className="simplified-workspace" data-variant="before">
      <header className="workspace-header">
        <h1>Workspace</h1>
        <span className="variant-label">before the plan</span>
        <button type="button" className="sign-out" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <div className="workspace-search-bar" role="search">
        <input
          type="search"
          name="q"
          className="search-input"
          placeholder="Filter prompts"
          value={text}
          onChange={(e) => {
            searchTyped(e.target.value.trim());
            setText(e.target.value);
          }}
        />
        <label className="filter">
          <span>Type</span>
          <select name="type" value={type} onChange={(e) => setType(e.target.value)}>
            <option value="all">All</option>
            <option value="image">Images</option>
            <option value="video">Videos</option>
          </select>
        </label>
        <div className="search-results">
          {assets === null ? "loading every asset…" : `${shown.length.toLocaleString("en")} results`}
        </div>
      </div>
      {error && <div className="error" role="alert">{error}</div>}
      <div className="before-grid" ref={root}>
        {shown.map((asset, index) => (
          <FullSizeCard key={asset.id} asset={asset} index={index} />
        ))}
      </div>
    </div>
  );
}
