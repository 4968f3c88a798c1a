// Keyboard shortcuts: "/" focuses the search, Esc closes the viewer or clears the selection,
// Ctrl+A selects every loaded asset, Ctrl+Z / Ctrl+Shift+Z (or Ctrl+Y) undo and redo, the
// arrow keys move the focus, Enter opens, Space selects (Shift+Space extends).
import { useEffect, useRef } from "react";

export interface ShortcutActions {
  focusSearch: () => void;
  escape: () => void;
  selectAll: () => void;
  undo: () => void;
  redo: () => void;
  move: (delta: "left" | "right" | "up" | "down") => void;
  open: () => void;
  toggleFocused: (extend: boolean) => void;
}

function typing(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target instanceof HTMLInputElement) return !["checkbox", "button"].includes(target.type);
  return target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement || target.isContentEditable;
}

const ARROWS: Record<string, "left" | "right" | "up" | "down"> = {
  ArrowLeft: "left",
  ArrowRight: "right",
  ArrowUp: "up",
  ArrowDown: "down",
};

export function useShortcuts(actions: ShortcutActions): void {
  const latest = useRef(actions);
  latest.current = actions;
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      const a = latest.current;
      const command = event.ctrlKey || event.metaKey;
      if (event.key === "Escape") {
        if (event.target instanceof HTMLElement && typing(event.target)) event.target.blur();
        a.escape();
        return;
      }
      // Inside a text field the browser's own editing keys win (Ctrl+Z undoes typing there).
      if (typing(event.target)) return;
      const key = event.key.toLowerCase();
      let handled = true;
      if (event.key === "/" && !command) a.focusSearch();
      else if (command && key === "a") a.selectAll();
      else if (command && key === "z" && event.shiftKey) a.redo();
      else if (command && (key === "z" || key === "y")) (key === "z" ? a.undo : a.redo)();
      else if (!command && event.key in ARROWS) a.move(ARROWS[event.key]);
      else if (!command && event.key === "Enter") a.open();
      else if (!command && event.key === " ") a.toggleFocused(event.shiftKey);
      else handled = false;
      if (handled) event.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
}
