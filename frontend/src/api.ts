// The reference service's API as the page uses it: bearer token, JSON errors, typed bodies.

export type ContentType = "image" | "video";

export interface Asset {
  id: string;
  type: ContentType;
  prompt: string;
  status: string;
  quality: string;
  model_type: string | null;
  job_id: string | null;
  dismissed: boolean;
  created_at: string;
  thumbnail_url: string | null;
  high_res_url?: string | null;
}

export interface SearchPage {
  assets: Asset[];
  next_cursor: string | null;
  total: number;
  total_is_exact: boolean;
}

export interface WorkspacePage {
  assets: Asset[];
  next_cursor: string | null;
}

export type OperationKind = "dismiss" | "undismiss" | "delete" | "restore";

export interface Operation {
  id: string;
  kind: string;
  status: string;
  total: number;
  done: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = "workspace.token";

export function readToken(): string | null {
  const params = new URLSearchParams(window.location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    params.delete("token");
    const query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? `?${query}` : ""));
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

let token: string | null = null;

export function setToken(value: string | null): void {
  token = value;
}

export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  if (init.body !== undefined) headers.set("Content-Type", "application/json");
  const response = await fetch(path, { ...init, headers });
  if (!response.ok && response.status !== 202) {
    let message = `${response.status} ${response.statusText}`;
    let field: string | undefined;
    try {
      const body = await response.json();
      message = body.message ?? message;
      field = body.field;
    } catch {
      // a body that is not JSON keeps the status line as the message
    }
    throw new ApiError(response.status, message, field);
  }
  return response;
}

/** Worth trying again: the request never got an answer, or the server was busy or down. */
export function transient(error: unknown): boolean {
  return !(error instanceof ApiError) || error.status >= 500 || error.status === 429;
}

/** Pauses before each new try of a failed load (ms): four more tries in about 8 s. */
export const RETRY_MS = [500, 1000, 2000, 4000] as const;

export async function getJson<T>(path: string, init?: RequestInit): Promise<T> {
  return (await (await request(path, init)).json()) as T;
}

export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  return search.toString();
}
