// Copies the chart library's standalone production build, with its licence, into
// api/static/vendor/. The page loads that committed copy: nothing is fetched at run time, and
// npm is only needed by someone upgrading the library.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, "node_modules", "lightweight-charts");
const outDir = join(here, "..", "static", "vendor");
const bundle = "lightweight-charts.standalone.production.js";

const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
mkdirSync(outDir, { recursive: true });
copyFileSync(join(pkgDir, "dist", bundle), join(outDir, bundle));
copyFileSync(join(pkgDir, "LICENSE"), join(outDir, "LICENSE"));

const sha256 = createHash("sha256").update(readFileSync(join(outDir, bundle))).digest("hex");
// The npm package ships no NOTICE file: this one records where the copy came from, and the
// bundled dependency (fancy-canvas, MIT) the standalone build contains.
writeFileSync(join(outDir, "NOTICE"), `${bundle}
  TradingView Lightweight Charts(TM) v${pkg.version}
  Copyright (c) TradingView, Inc. Licensed under the Apache License 2.0
  (LICENSE in this folder). https://www.tradingview.com/
  Unmodified copy of dist/${bundle} from the npm package lightweight-charts@${pkg.version},
  sha256 ${sha256}.
  The standalone build bundles fancy-canvas (MIT licence, Copyright (c) TradingView, Inc.).
  Regenerate with: cd api/dashboard && npm ci && npm run vendor
`);
console.log(`vendored lightweight-charts@${pkg.version} -> ${join(outDir, bundle)} (sha256 ${sha256})`);
