// /app/ is the plan's workspace; /app/?variant=before is the pre-plan page it is measured
// against. Sign in by pasting a bearer token, or pass ?token= (the benchmark does).
import { useState } from "react";
import { createRoot } from "react-dom/client";
import { forgetToken, readToken, saveToken, setToken } from "./api";
import { Workspace } from "./after/Workspace";
import { BeforeWorkspace } from "./before/BeforeWorkspace";

const variant = new URLSearchParams(window.location.search).get("variant") === "before" ? "before" : "after";

function SignIn({ onToken }: { onToken: (token: string) => void }) {
  const [value, setValue] = useState("");
  return (
    <form
      className="sign-in"
      onSubmit={(event) => {
        event.preventDefault();
        if (value.trim()) onToken(value.trim());
      }}
    >
      <h1>Workspace</h1>
      <label>
        Access token (a Supabase-style JWT; <code>make serve</code> prints one)
        <textarea name="token" rows={4} value={value} onChange={(e) => setValue(e.target.value)} />
      </label>
      <button type="submit">Sign in</button>
    </form>
  );
}

function Root() {
  const [token, setTokenState] = useState<string | null>(() => readToken());
  setToken(token);
  if (token === null)
    return (
      <SignIn
        onToken={(t) => {
          saveToken(t);
          setTokenState(t);
        }}
      />
    );
  const signOut = () => {
    forgetToken();
    setTokenState(null);
  };
  return variant === "before" ? <BeforeWorkspace onSignOut={signOut} /> : <Workspace onSignOut={signOut} />;
}

createRoot(document.getElementById("root") as HTMLElement).render(<Root />);
