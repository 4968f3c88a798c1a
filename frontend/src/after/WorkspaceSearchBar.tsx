// The plan's WorkspaceSearchBar: the prompt query, the filters (type, quality, model, status,
// a date range) and the sort, with the result count.
import type { Ref } from "react";
import { searchTyped } from "../perf";
import type { SearchState } from "./useWorkspaceSearch";

interface Props {
  searchState: SearchState;
  onSearchChange: (next: SearchState) => void;
  totalResults: number | null;
  /** false: the total is a lower bound (the server stopped counting at its cap). */
  totalIsExact: boolean;
  loading: boolean;
  inputRef: Ref<HTMLInputElement>;
}

interface Option {
  value: string;
  label: string;
}

function FilterDropdown(props: {
  label: string;
  value: string;
  options: Option[];
  onChange: (value: string) => void;
}) {
  return (
    <label className="filter">
      <span>{props.label}</span>
      <select
        name={props.label.toLowerCase()}
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
      >
        {props.options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </label>
  );
}

const ALL = { value: "all", label: "All" };

export function WorkspaceSearchBar(props: Props) {
  const { searchState: s, onSearchChange } = props;
  const filters = (patch: Partial<SearchState["filters"]>) =>
    onSearchChange({ ...s, filters: { ...s.filters, ...patch } });
  return (
    <div className="workspace-search-bar" role="search">
      <div className="search-input-group">
        <input
          ref={props.inputRef}
          type="search"
          name="q"
          placeholder="Search prompts  ( / )"
          value={s.query}
          maxLength={200}
          autoComplete="off"
          onChange={(e) => {
            searchTyped(e.target.value.trim());
            onSearchChange({ ...s, query: e.target.value });
          }}
          className="search-input"
        />
        {s.query && (
          <button
            type="button"
            className="clear-search"
            aria-label="clear search"
            onClick={() => onSearchChange({ ...s, query: "" })}
          >
            ×
          </button>
        )}
      </div>
      <div className="search-filters">
        <FilterDropdown
          label="Type"
          value={s.filters.type}
          options={[ALL, { value: "image", label: "Images" }, { value: "video", label: "Videos" }]}
          onChange={(v) => filters({ type: v as SearchState["filters"]["type"] })}
        />
        <FilterDropdown
          label="Quality"
          value={s.filters.quality}
          options={[ALL, { value: "fast", label: "Fast" }, { value: "high", label: "High" }]}
          onChange={(v) => filters({ quality: v as SearchState["filters"]["quality"] })}
        />
        <FilterDropdown
          label="Model"
          value={s.filters.model}
          options={[
            ALL,
            { value: "SDXL", label: "SDXL" },
            { value: "WAN", label: "WAN" },
            { value: "Enhanced", label: "Enhanced" },
            { value: "none", label: "Plain" },
          ]}
          onChange={(v) => filters({ model: v as SearchState["filters"]["model"] })}
        />
        <FilterDropdown
          label="Status"
          value={s.filters.status}
          options={[
            ALL,
            { value: "completed", label: "Completed" },
            { value: "generating", label: "Generating" },
            { value: "failed", label: "Failed" },
          ]}
          onChange={(v) => filters({ status: v as SearchState["filters"]["status"] })}
        />
        <label className="filter">
          <span>From</span>
          <input
            type="date"
            name="start"
            value={s.filters.start ?? ""}
            onChange={(e) => filters({ start: e.target.value || null })}
          />
        </label>
        <label className="filter">
          <span>To</span>
          <input
            type="date"
            name="end"
            value={s.filters.end ?? ""}
            onChange={(e) => filters({ end: e.target.value || null })}
          />
        </label>
        <FilterDropdown
          label="Sort"
          value={s.sort.by}
          options={[
            { value: "date", label: "Date" },
            { value: "prompt", label: "Prompt" },
            { value: "quality", label: "Quality" },
            { value: "model", label: "Model" },
          ]}
          onChange={(v) => onSearchChange({ ...s, sort: { ...s.sort, by: v as SearchState["sort"]["by"] } })}
        />
        <button
          type="button"
          className="sort-order"
          aria-label={`sort ${s.sort.order === "asc" ? "ascending" : "descending"}`}
          onClick={() =>
            onSearchChange({ ...s, sort: { ...s.sort, order: s.sort.order === "asc" ? "desc" : "asc" } })
          }
        >
          {s.sort.order === "asc" ? "↑" : "↓"}
        </button>
      </div>
      <div className="search-results" aria-live="polite">
        {props.totalResults === null
          ? "…"
          : `${props.totalResults.toLocaleString("en")}${props.totalIsExact ? "" : "+"} results`}
        {props.loading && <span className="spinner small" aria-hidden="true" />}
      </div>
    </div>
  );
}
