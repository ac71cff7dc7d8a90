// Copies the terminal's browser builds from node_modules into clown/static/vendor/.
// Run after `npm ci`: `node build.mjs` (or `npm run build`). clown/webui/__init__.py
// (build_assets) runs both at package build time; nothing here is committed.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const vendor = join(here, "..", "static", "vendor");

// [source in node_modules, file name in vendor/]. The ES module builds are copied under a
// .js name so every server sends them with a JavaScript MIME type.
const scripts = [
  ["@xterm/xterm/lib/xterm.mjs", "xterm.js"],
  ["@xterm/addon-fit/lib/addon-fit.mjs", "addon-fit.js"],
];
const files = [
  ["@xterm/xterm/css/xterm.css", "xterm.css"],
  ["@xterm/xterm/LICENSE", "xterm.LICENSE"],
  ["@xterm/addon-fit/LICENSE", "addon-fit.LICENSE"],
];

mkdirSync(vendor, { recursive: true });
for (const [from, to] of scripts) {
  // The source maps are not shipped: drop the comment so browsers do not ask for them.
  const text = readFileSync(join(modules, from), "utf8").replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n");
  writeFileSync(join(vendor, to), text);
}
for (const [from, to] of files) {
  copyFileSync(join(modules, from), join(vendor, to));
}
console.log(`clown web UI: copied ${scripts.length + files.length} files into ${vendor}`);
