// One bundle (production React), the page and its stylesheet, into dist/.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const out = "dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
await build({
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ["chrome100"],
  outfile: `${out}/app.js`,
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
copyFileSync("index.html", `${out}/index.html`);
copyFileSync("src/app.css", `${out}/app.css`);
